"""A device's own reports (readings, Responses), committed in batches: 201 only once the batch commits.

A report is validated first (schema, device time, ownership: each report answers its own 4xx), by
its route or by the raw-ASGI front (server/shared/fast_reports.py), then its rows go to the store's
group-commit writer (store/group_commit.py) and the request waits. The writer commits whatever
reports have queued in one transaction, bumps the activity counter once for them all (a report
publishes nothing, see `request_unit.write_unit`), and only then lets each waiting request answer.
One writer per serving process, kept on its AppContext so that both paths share it; with several
processes on SQLite their batches take turns at the file's write lock like any writer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, Request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gridshare.server.shared.context import AppContext
from gridshare.server.shared.metrics import PROCESS
from gridshare.server.shared.request_unit import context, publishes_nothing
from gridshare.store.bulk_insert import InsertBatch
from gridshare.store.db import activity_bump, bump_activity
from gridshare.store.group_commit import GroupCommitWriter, WriterStopped

T = TypeVar("T")

_CREATE_LOCK = threading.Lock()
#: What a device is told when its report's transaction did not commit: keep it and post it again.
NOT_STORED_RETRY_AFTER_S = 1


class ReportNotStored(Exception):
    """The batch holding this report did not commit (store busy or gone): nothing of it was stored."""


def report_writer(ctx: AppContext) -> GroupCommitWriter:
    """The serving process's writer for device reports, made on first use."""
    writer = ctx.report_writer
    if writer is None:
        with _CREATE_LOCK:
            writer = ctx.report_writer
            if writer is None:
                writer = GroupCommitWriter(
                    ctx.sessions,
                    after_batch=bump_activity,
                    name="gridshare-report-writer",
                    linger_s=ctx.settings.report_linger_ms / 1000,
                    insert_batch=InsertBatch(ctx.engine, also=(activity_bump(),)),
                )
                ctx.report_writer = writer
                PROCESS.report_batches = lambda: (writer.batches_committed, writer.jobs_committed)
    return writer


async def commit(ctx: AppContext, apply: Callable[[Session], T]) -> T:
    """Run `apply` in the next batch's transaction and return its result once that has committed.

    `apply` may run twice (alone, after its batch failed), so it builds its rows afresh each call.
    """
    try:
        return await report_writer(ctx).run(apply)
    except (WriterStopped, OperationalError) as exc:
        raise ReportNotStored(f"the report was not stored ({type(exc).__name__}); post it again") from None


async def commit_report(request: Request, apply: Callable[[Session], T]) -> T:
    """`commit` for a route: a store that is busy or gone answers 503 and the device posts it again."""
    publishes_nothing(request)  # the report writer stores report rows only (and bumps activity)
    try:
        return await commit(context(request), apply)
    except ReportNotStored as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(NOT_STORED_RETRY_AFTER_S)}) from None
