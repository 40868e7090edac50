"""The publisher lease: one conditional UPDATE decides which instance may publish.

The UPDATE succeeds only for the current holder or once the lease has expired, which is atomic on
SQLite and PostgreSQL alike; taken inside the publishing transaction, it also serialises publishers.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.orm import Session

from gridshare.store.models import PublisherLease


def holder_id() -> str:
    """Unique per process: host, pid and a random suffix (a restarted pid must not inherit a lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(session: Session, holder: str, now_s: int, ttl_s: int) -> bool:
    statement = (
        update(PublisherLease)
        .where(
            PublisherLease.id == 1, or_(PublisherLease.holder == holder, PublisherLease.expires_s <= now_s)
        )
        .values(holder=holder, expires_s=now_s + ttl_s)
    )
    # An UPDATE executes to a CursorResult (which has rowcount); Session.execute is typed as Result.
    result = cast("CursorResult[Any]", session.execute(statement))
    return result.rowcount == 1


def release(session: Session, holder: str) -> None:
    session.execute(
        update(PublisherLease)
        .where(PublisherLease.id == 1, PublisherLease.holder == holder)
        .values(holder="", expires_s=0)
    )
