"""Run-time setting overrides: the one table the device routes, the operator API and the engine all read.

An operator's poll rates and MirrorUsagePoint post rate, and the engine's own run-time keys (status,
requests), live here as key -> JSON value. Shares `store.models.Base`; `store.db` and the Alembic
environment import this module so the metadata is whole.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from gridshare.store.models import Base


class ServerSetting(Base):
    """A run-time override of a setting (e.g. a poll rate), set through the operator API.

    Overrides win over `gridshare.settings` and survive restarts; every change bumps the publication
    counter, which is how every serving process learns to re-read them.
    """

    __tablename__ = "server_setting"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    changed_s: Mapped[int] = mapped_column(BigInteger)
