"""Group commit: many small writes from many requests share one transaction, and each learns its outcome.

A device's report (a MirrorMeterReading, a DERControl Response) is a few rows. Committing each in its
own transaction costs a transaction's overhead per report (and on SQLite, whose writers take turns,
the turn itself); a fleet reporting every minute pays it thousands of times a second. Here a request
hands its already-validated rows to one writer thread per store, waits, and is told the outcome only
after the transaction that holds its rows has committed: a caller that hears success may answer 201,
because its rows are in the store as any other connection will see them. A failure is never reported
as success: a job whose transaction did not commit (an error, the process stopping) gets the exception.

A job that fails inside a batch must not take its batch-mates down with it: the batch is rolled back
and every job in it is then run in a transaction of its own, so only the faulty one fails.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

T = TypeVar("T")

#: At most this many jobs share one transaction: bounds the time a batch holds the write lock (SQLite)
#: and the work redone one job at a time if a batch fails.
DEFAULT_MAX_BATCH = 256
#: A writer thread with no work for this long exits (the next job starts another), so an idle or
#: discarded store keeps no thread.
DEFAULT_IDLE_S = 5.0


class WriterStopped(RuntimeError):
    """The writer was closed before this job's transaction committed: nothing of it was stored."""


@dataclass
class _Job(Generic[T]):
    apply: Callable[[Session], T]
    future: Future[T]


class GroupCommitWriter:
    """One writer thread per store that commits whatever jobs have queued, at most `max_batch` at a time.

    `after_batch(session)` runs once in each committed transaction after its jobs (the activity counter
    bump), so the cost of telling watchers is paid once per batch rather than once per report.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        after_batch: Callable[[Session], None] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        idle_s: float = DEFAULT_IDLE_S,
        name: str = "gridshare-group-commit",
    ) -> None:
        self._sessions = sessions
        self._after_batch = after_batch
        self._max_batch = max_batch
        self._idle_s = idle_s
        self._name = name
        self._queue: deque[_Job[Any]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Transactions committed and jobs they held, for tests and metrics (written by the writer only).
        self.batches_committed = 0
        self.jobs_committed = 0

    def submit(self, apply: Callable[[Session], T]) -> Future[T]:
        """Queue `apply` to run in the next batch's transaction; the future resolves after the commit."""
        future: Future[T] = Future()
        # Running from the start: a waiter that goes away (the client hung up) cannot cancel a job its
        # batch may already have committed, and the writer never meets a cancelled future.
        future.set_running_or_notify_cancel()
        with self._cond:
            if self._closed:
                future.set_exception(WriterStopped("the store's writer is stopped"))
                return future
            self._queue.append(_Job(apply, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        return future

    def close(self, timeout_s: float = 10.0) -> None:
        """Refuse new jobs, commit those already queued, and wait for the thread to finish."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout_s)
        with self._cond:  # the thread did not finish in time: nothing left may wait forever
            stranded = list(self._queue)
            self._queue.clear()
        for job in stranded:
            job.future.set_exception(WriterStopped("the store's writer stopped before this was committed"))

    def _take(self) -> list[_Job[Any]] | None:
        with self._cond:
            if not self._queue and not self._closed:
                self._cond.wait(self._idle_s)
            if not self._queue:
                self._thread = None  # submit() starts another; decided under the same lock
                return None
            count = min(len(self._queue), self._max_batch)
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._commit(batch)
            except BaseException as exc:
                log.exception("group commit failed outside any job")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _commit(self, batch: list[_Job[Any]]) -> None:
        results: list[Any] = []
        try:
            with self._sessions() as session, session.begin():
                for job in batch:
                    results.append(job.apply(session))
                if self._after_batch is not None:
                    self._after_batch(session)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            # Which job? Each alone, so a bad one fails by itself and its batch-mates still commit.
            log.info("a batch of %d writes failed (%s); committing them one by one", len(batch), exc)
            for job in batch:
                self._commit([job])
            return
        self.batches_committed += 1
        self.jobs_committed += len(batch)
        # Only now, after the commit: each waiter may answer success.
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)
