"""Operator API access: bearer tokens (kept as SHA-256) and the audit log of accepted writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.store.access_models import ApiRole, ApiToken, AuditEntry
from gridshare.store.queries.paging import page_of


def token_by_digest(session: Session, token_sha256: str) -> ApiToken | None:
    return session.execute(select(ApiToken).where(ApiToken.token_sha256 == token_sha256)).scalar_one_or_none()


def token_by_name(session: Session, name: str) -> ApiToken | None:
    return session.execute(select(ApiToken).where(ApiToken.name == name)).scalar_one_or_none()


def add_token(session: Session, *, name: str, role: ApiRole, token_sha256: str, now_s: int) -> ApiToken:
    token = ApiToken(name=name, role=role, token_sha256=token_sha256, created_s=now_s)
    session.add(token)
    session.flush()
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.execute(select(ApiToken).order_by(ApiToken.id)).scalars().all())


def add_audit(
    session: Session,
    *,
    at_s: int,
    actor: str,
    role: str,
    method: str,
    path: str,
    action: str,
    target: str,
    details: dict[str, Any] | None,
) -> AuditEntry:
    entry = AuditEntry(
        at_s=at_s,
        actor=actor[:64],
        role=role[:16],
        method=method[:8],
        path=path[:255],
        action=action[:64],
        target=target[:128],
        details=details,
    )
    session.add(entry)
    return entry


def audit_page(session: Session, *, start: int, limit: int) -> tuple[int, list[AuditEntry]]:
    """Newest first: an operator reading the log wants the latest changes on the first page."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    return page_of(session, query, start=start, limit=limit)
