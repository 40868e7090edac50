"""One operator write = one transaction that holds the change, its audit entry and a publication bump.

Routes do their work inside `Writer.transaction(...)`; if anything raises (a 404, a 409, a 422 from a
late check) the whole transaction rolls back, so neither a half-written change nor an audit entry for
a refused request is ever left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from gridshare.server.operator.auth import Caller, context, require_operator
from gridshare.server.shared.context import AppContext
from gridshare.store.change_feed import wait_until_heard
from gridshare.store.db import bump_publication, transaction
from gridshare.store.queries.access import add_audit


@dataclass
class Change:
    """The open transaction of one write; the route fills in `target` and `details` as it learns them."""

    session: Session
    now_s: int
    target: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Writer:
    ctx: AppContext
    caller: Caller
    method: str
    path: str

    @contextmanager
    def transaction(self, action: str, target: str = "") -> Iterator[Change]:
        with transaction(self.ctx.sessions) as session:
            change = Change(session=session, now_s=self.ctx.now_s(), target=target)
            yield change
            session.flush()
            add_audit(
                session,
                at_s=change.now_s,
                actor=self.caller.name,
                role=str(self.caller.role),
                method=self.method,
                path=self.path,
                action=action,
                target=change.target,
                details=change.details or None,
            )
            # Every operator write may change what a client sees; the bump makes caches re-read.
            bump_publication(session)
        # Answer only once this process's device caches have heard of the commit (PostgreSQL's NOTIFY
        # arrives a moment after it): a device polling right after the operator's 2xx sees the change.
        wait_until_heard(self.ctx.engine)


def writer(request: Request, caller: Caller = Depends(require_operator)) -> Writer:
    """FastAPI dependency for every write route: operator role required, audit wired in."""
    return Writer(context(request), caller, request.method, request.url.path)
