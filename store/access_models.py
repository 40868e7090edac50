"""Who may use the operator API and what they did: bearer tokens and the audit log.

Apart from `store.models` so the device-facing schema module stays what devices need; they share its
`Base`, and `store.db` / the Alembic environment import this module so the metadata is whole.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gridshare.store.models import Base


class ApiRole(enum.StrEnum):
    """`operator` may change things; `viewer` may only read (the audit log included)."""

    operator = "operator"
    viewer = "viewer"


class ApiToken(Base):
    """A bearer token, kept only as its SHA-256 so a copy of the database does not hand out access."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[ApiRole] = mapped_column(
        Enum(ApiRole, name="api_role", native_enum=False, length=16, validate_strings=True)
    )
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_s: Mapped[int] = mapped_column(BigInteger)
    revoked_s: Mapped[int | None] = mapped_column(BigInteger)


class AuditEntry(Base):
    """One accepted operator write: who (token name and role), what (request and action) and when.

    Written in the same transaction as the change it describes, so the log never claims a change that
    was rolled back and never misses one that was committed.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_at", "at_s"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at_s: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
