"""A device's own reports (readings, Responses), committed in batches: 201 only once the batch commits.

The route validates the report in a read unit (schema, device time, ownership: each report answers
its own 4xx), then hands the rows to the store's group-commit writer (store/group_commit.py) and
waits. The writer commits whatever reports have queued in one transaction, bumps the activity
counter once for them all (a report publishes nothing, see `request_unit.write_unit`), and only then
lets each waiting request answer. One writer per application, that is per serving process: with
several processes on SQLite their batches take turns at the file's write lock like any writer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, Request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gridshare.server.shared.request_unit import context
from gridshare.store.db import bump_activity
from gridshare.store.group_commit import GroupCommitWriter, WriterStopped

T = TypeVar("T")

_CREATE_LOCK = threading.Lock()


def report_writer(request: Request) -> GroupCommitWriter:
    """The application's writer for device reports, made on first use."""
    state = request.app.state
    writer: GroupCommitWriter | None = getattr(state, "report_writer", None)
    if writer is None:
        with _CREATE_LOCK:
            writer = getattr(state, "report_writer", None)
            if writer is None:
                writer = GroupCommitWriter(
                    context(request).sessions, after_batch=bump_activity, name="gridshare-report-writer"
                )
                state.report_writer = writer
    return writer


async def commit_report(request: Request, apply: Callable[[Session], T]) -> T:
    """Run `apply` in the next batch's transaction and return its result once that has committed.

    `apply` may run twice (alone, after its batch failed), so it builds its rows afresh each call.
    A store that is busy or gone answers 503: the device keeps the report and posts it again.
    """
    future = report_writer(request).submit(apply)
    try:
        return await asyncio.wrap_future(future)
    except (WriterStopped, OperationalError) as exc:
        raise HTTPException(
            503,
            f"the report was not stored ({type(exc).__name__}); post it again",
            headers={"Retry-After": "1"},
        ) from None
