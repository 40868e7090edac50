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

Per-report costs are paid once per batch where they can be: rows a job only inserts are queued
(`defer_insert`, `defer_insert_returning` when the caller needs the new row's key) and written by one
statement per table at the end of the batch, and the waiters of one event loop are woken by one call into
that loop, not one each. A batch made only of `Inserts` jobs (a device's reports) needs no ORM session at
all: the store writes it, and the batch's bookkeeping, in one go (on PostgreSQL one statement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Table
from sqlalchemy.orm import Session, sessionmaker

from gridshare.store.bulk_insert import BatchJob, insert_jobs, insert_rows, insert_rows_returning_keys

log = logging.getLogger(__name__)

T = TypeVar("T")

#: At most this many jobs share one transaction: bounds the time a batch holds the write lock (SQLite)
#: and the work redone one job at a time if a batch fails.
DEFAULT_MAX_BATCH = 256
#: A writer thread with no work for this long exits (the next job starts another), so an idle or
#: discarded store keeps no thread.
DEFAULT_IDLE_S = 5.0


#: `Session.info` key set on every session a writer commits: an after-commit listener can tell a batch
#: of reports (which changes no published state) from other commits.
GROUP_COMMIT = "gridshare.group_commit"
_DEFERRED = "gridshare.group_commit.deferred"


class WriterStopped(RuntimeError):
    """The writer was closed before this job's transaction committed: nothing of it was stored."""


class InsertedId:
    """The primary key a deferred insert is given when its batch's rows are written (before the commit
    that its waiter hears of, so it is always set by then)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: int | None = None

    def __int__(self) -> int:
        if self.value is None:
            raise RuntimeError("the row has not been inserted yet")
        return self.value


#: What a batch's session has queued by `defer_insert`: each call's rows, and the key handles of the
#: rows whose keys its caller needs (None for plain inserts).
_Deferred = list[tuple[BatchJob, list[InsertedId] | None]]


@dataclass(frozen=True)
class Inserts:
    """A job that only adds rows (a device's report): `rows` into `table`; with `keyed`, the job's result
    is the keys its rows were given, in order (a Response's Location).

    Such a job needs no ORM session and reads nothing, so a batch made only of them is handed whole to the
    store's `insert_batch` (store/bulk_insert.py): on PostgreSQL one statement that is its own transaction.
    Called with a session (a batch that mixes it with other jobs), it queues its rows as `defer_insert`
    does. Either way its result is the list of its rows' keys (empty unless `keyed`), each set before the
    commit its waiter hears of."""

    table: Table
    rows: tuple[dict[str, Any], ...]
    keyed: bool = False

    def __call__(self, session: Session) -> list[InsertedId]:
        if not self.keyed:
            defer_insert(session, self.table, list(self.rows))
            return []
        return [defer_insert_returning(session, self.table, row) for row in self.rows]


#: Runs a batch of insert-only jobs and the batch's bookkeeping as one committed transaction; returns
#: each job's keys (empty unless keyed). store/bulk_insert.InsertBatch.
InsertBatchRunner = Callable[[list[BatchJob]], list[list[int]]]


def defer_insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` into `table` before this session's transaction commits, with every other job's
    rows for the same table in one statement (store/bulk_insert.py). Outside a writer's batch they
    are inserted now."""
    if not rows:
        return
    deferred: _Deferred | None = session.info.get(_DEFERRED)
    if deferred is None:
        insert_rows(session.connection(), table, rows)
    else:
        deferred.append(((table, list(rows), False), None))


def defer_insert_returning(session: Session, table: Table, row: dict[str, Any]) -> InsertedId:
    """`defer_insert` of one row whose primary key the caller needs: set before the batch commits."""
    inserted = InsertedId()
    deferred: _Deferred | None = session.info.get(_DEFERRED)
    if deferred is None:
        (inserted.value,) = insert_rows_returning_keys(session.connection(), table, [row])
    else:
        deferred.append(((table, [row], True), [inserted]))
    return inserted


def _write_deferred(session: Session, deferred: _Deferred) -> None:
    # On the session's connection, below the ORM: these are plain INSERTs, and the ORM's execute path
    # around each cost more than a batch's rows (the writer thread shares the interpreter with the loop).
    if not deferred:
        return
    keys = insert_jobs(session.connection(), [job for job, _ in deferred])
    for (_, handles), given in zip(deferred, keys, strict=True):
        if handles is None:
            continue
        if len(given) != len(handles):
            raise RuntimeError(f"{len(handles)} rows inserted, {len(given)} keys returned")
        for inserted, key in zip(handles, given, strict=True):
            inserted.value = key


class _AsyncWaiter(Generic[T]):
    """A waiter on an event loop: resolved from the writer thread through one call per loop and batch."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()


@dataclass
class _Job(Generic[T]):
    apply: Callable[[Session], T]
    future: Future[T] | _AsyncWaiter[T]


class GroupCommitWriter:
    """One writer thread per store that commits whatever jobs have queued, at most `max_batch` at a time.

    `linger_s`: under concurrent load, how long a batch waits for more jobs before it commits. Each
    transaction costs the same whatever it holds (and its thread contends with the event loop for the
    interpreter), so a few milliseconds of waiting buys batches several times larger.

    `after_batch(session)` runs once in each committed transaction after its jobs (the activity counter
    bump), so the cost of telling watchers is paid once per batch rather than once per report.

    `insert_batch`: what stores a batch made only of `Inserts` jobs without a session; it must do what
    `after_batch` does in the same transaction. A device's reports are such jobs: on PostgreSQL their
    batch is one statement, one round trip, where the session path took five (BEGIN, two INSERTs, the
    UPDATE, COMMIT) and twice the writer's CPU (bench/bench_report_writer.py).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        after_batch: Callable[[Session], None] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        idle_s: float = DEFAULT_IDLE_S,
        name: str = "gridshare-group-commit",
        linger_s: float = 0.0,
        insert_batch: InsertBatchRunner | None = None,
    ) -> None:
        self._sessions = sessions
        self._after_batch = after_batch
        self._insert_batch = insert_batch
        self._max_batch = max_batch
        self._idle_s = idle_s
        self._name = name
        self._linger_s = linger_s
        self._busy = False
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
        if not self._enqueue(_Job(apply, future)):
            future.set_exception(WriterStopped("the store's writer is stopped"))
        return future

    async def run(self, apply: Callable[[Session], T]) -> T:
        """`submit` for a coroutine: `apply`'s result once its batch has committed.

        The waiter is woken with the rest of its batch from this loop (one thread-safe call per batch);
        if it is cancelled first (the client hung up), the job still runs and commits.
        """
        waiter: _AsyncWaiter[T] = _AsyncWaiter(asyncio.get_running_loop())
        if not self._enqueue(_Job(apply, waiter)):
            raise WriterStopped("the store's writer is stopped")
        return await waiter.future

    def _enqueue(self, job: _Job[Any]) -> bool:
        with self._cond:
            if self._closed:
                return False
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        return True

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
        stopped = WriterStopped("the store's writer stopped before this was committed")
        _settle([(job, None, stopped) for job in stranded])

    def _take(self) -> list[_Job[Any]] | None:
        with self._cond:
            if not self._queue and not self._closed:
                self._cond.wait(self._idle_s)
            if not self._queue:
                self._thread = None  # submit() starts another; decided under the same lock
                self._busy = False
                return None
            # Under concurrent load (more than one job waiting, or the last batch was shared), let the
            # batch fill for a moment: the requests still being parsed join this transaction instead
            # of each paying one. A lone job (one device, a quiet fleet) is committed at once.
            linger = self._linger_s if (self._busy or len(self._queue) > 1) and not self._closed else 0.0
        if linger and len(self._queue) < self._max_batch:
            time.sleep(linger)
        with self._cond:
            count = min(len(self._queue), self._max_batch)
            self._busy = count > 1
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._commit(batch)
            except BaseException as exc:
                log.exception("group commit failed outside any job")
                _settle([(job, None, exc) for job in batch if not _done(job)])

    def _commit(self, batch: list[_Job[Any]]) -> None:
        _settle(self._outcomes(batch))

    def _outcomes(self, batch: list[_Job[Any]]) -> list[tuple[_Job[Any], Any, BaseException | None]]:
        """Each job's result (or exception), known only once its transaction has committed (or failed)."""
        results: list[Any]
        try:
            if self._insert_batch is not None and all(isinstance(job.apply, Inserts) for job in batch):
                results = self._inserted(batch, self._insert_batch)
            else:
                results = self._in_session(batch)
        except Exception as exc:
            if len(batch) == 1:
                return [(batch[0], None, exc)]
            # Which job? Each alone, so a bad one fails by itself and its batch-mates still commit.
            log.info("a batch of %d writes failed (%s); committing them one by one", len(batch), exc)
            return [outcome for job in batch for outcome in self._outcomes([job])]
        self.batches_committed += 1
        self.jobs_committed += len(batch)
        # Only now, after the commit: each waiter may answer success.
        return [(job, result, None) for job, result in zip(batch, results, strict=True)]

    @staticmethod
    def _inserted(batch: list[_Job[Any]], insert_batch: InsertBatchRunner) -> list[Any]:
        """Each job's key handles, once `insert_batch` has stored the whole batch (all `Inserts`)."""
        jobs = [apply for apply in (job.apply for job in batch) if isinstance(apply, Inserts)]
        if len(jobs) != len(batch):
            raise TypeError("an insert batch holds only Inserts jobs")
        keys = insert_batch([(job.table, list(job.rows), job.keyed) for job in jobs])
        results: list[list[InsertedId]] = []
        for job, given in zip(jobs, keys, strict=True):
            if len(given) != (len(job.rows) if job.keyed else 0):
                raise RuntimeError(f"{len(given)} keys returned for a job of {len(job.rows)} rows")
            handles = [InsertedId() for _ in given]
            for handle, key in zip(handles, given, strict=True):
                handle.value = key
            results.append(handles)
        return results

    def _in_session(self, batch: list[_Job[Any]]) -> list[Any]:
        """Each job's result, run in one ORM session's transaction with the deferred rows and after_batch."""
        results: list[Any] = []
        with self._sessions() as session, session.begin():
            session.info[GROUP_COMMIT] = True
            deferred: _Deferred = []
            session.info[_DEFERRED] = deferred
            for job in batch:
                results.append(job.apply(session))
            _write_deferred(session, deferred)
            if self._after_batch is not None:
                self._after_batch(session)
        return results


def _done(job: _Job[Any]) -> bool:
    future = job.future
    return future.future.done() if isinstance(future, _AsyncWaiter) else future.done()


def _settle(outcomes: list[tuple[_Job[Any], Any, BaseException | None]]) -> None:
    """Tell each job's waiter its outcome: thread futures directly, a loop's waiters in one call to it."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for job, result, exc in outcomes:
        future = job.future
        if isinstance(future, _AsyncWaiter):
            by_loop.setdefault(future.loop, []).append((future.future, result, exc))
        elif exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting there any more
            loop.call_soon_threadsafe(_resolve, waiters)


def _resolve(waiters: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in waiters:
        if future.done():  # cancelled: its request went away
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
