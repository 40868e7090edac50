"""Run network tasks on Dask distributed: an in-process cluster by default, or a real one by address.

`ComputeCluster()` starts a `LocalCluster` of worker *processes* inside the service, so `gridshare
serve` needs no extra service. Processes rather than threads: the engine's Python loops hold the GIL,
and in threads they would stall the device port's request handling in the same process; a worker
process can also die (out of memory, a solver crash) without taking the service down, and every task
and result crosses the same pickling boundary as on a real cluster, so what works embedded works
distributed. With `compute_scheduler_address = "tcp://host:8786"` the service is only a client of a
cluster started with `dask scheduler` / `dask worker` (docs/utility-scale.md).

Every task has a timeout: a network not back by then is reported failed (its result is dropped should
it come later) so the caller can put it on fallback at its deadline while publishing the others. A
worker lost mid-task is the scheduler's business: it reruns the task on another worker, up to its
`allowed-failures` (then the network fails as "worker lost"). An exception escaping the engine is
retried `retries` times; bad input is not retried (it fails the same way anywhere). A result is
checked whole on arrival (`check_complete`): complete or absent, never partial.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gridshare.compute.outcome import ComputeBatch, Computed, Failed, FailureKind, NetworkOutcome
from gridshare.compute.task import (
    IncompleteResult,
    NetworkResult,
    NetworkTask,
    check_complete,
    compute_network,
)

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

    from gridshare.core.settings import Settings

log = logging.getLogger("gridshare.compute")

#: The scheduler setting's name, for messages an operator can act on.
ADDRESS_SETTING = "compute_scheduler_address"


class ComputeClusterUnavailable(RuntimeError):
    """No Dask scheduler answered at the configured address (or the in-process one would not start)."""


@dataclass(frozen=True)
class Refused:
    """What a worker hands back instead of a result when the engine refused the input."""

    kind: FailureKind
    detail: str


def run_task(task: NetworkTask, not_after_s: float) -> NetworkResult | Refused:
    """What a worker runs: the network's computation, unless its deadline (wall clock) has passed.

    Bad input comes back as a `Refused` value, so Dask does not retry it; anything else the engine
    raises propagates and is retried up to the task's `retries`.
    """
    if time.time() > not_after_s:
        return Refused("timeout", "reached a worker after its deadline; not computed")
    try:
        return compute_network(task)
    except IncompleteResult as exc:
        return Refused("incomplete", str(exc))
    except ValueError as exc:  # NetworkError and the engine's other input checks
        return Refused("bad input", f"{type(exc).__name__}: {exc}")


@dataclass
class PendingNetwork:
    """One submitted network: its task, its future and by when it must be back (monotonic seconds)."""

    task: NetworkTask
    future: Future
    submitted: float
    deadline: float


class ComputeCluster:
    """A Dask client on an in-process cluster (`scheduler_address` None) or a real one.

    Use as a context manager, or `start()` / `close()`. `compute(tasks)` returns one outcome per task,
    in order; `as_completed(tasks)` yields them as they arrive, for a caller that publishes each network
    as soon as it is ready.
    """

    def __init__(
        self,
        scheduler_address: str | None = None,
        *,
        local_workers: int = 1,
        connect_timeout_s: float = 10.0,
        task_timeout_s: float = 120.0,
        retries: int = 1,
        local_allowed_failures: int = 3,
    ) -> None:
        if local_workers < 1:
            raise ValueError("local_workers must be >= 1")
        self.scheduler_address = scheduler_address
        self.local_workers = local_workers
        self.connect_timeout_s = connect_timeout_s
        self.task_timeout_s = task_timeout_s
        self.retries = retries
        self.local_allowed_failures = local_allowed_failures
        self._local: LocalCluster | None = None
        self._client: Client | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ComputeCluster:
        """The cluster the settings name; each network gets the recomputation budget as its timeout."""
        return cls(
            settings.compute_scheduler_address,
            local_workers=settings.compute_local_workers,
            connect_timeout_s=settings.compute_connect_timeout_s,
            task_timeout_s=settings.recompute_budget_s,
        )

    # -- lifetime ----------------------------------------------------------------------------------
    def start(self) -> ComputeCluster:
        """Connect to the scheduler (or start the in-process cluster); ComputeClusterUnavailable if not."""
        if self._client is not None:
            return self
        from distributed import Client, LocalCluster

        if self.scheduler_address is None:
            try:
                self._local = LocalCluster(
                    n_workers=self.local_workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    scheduler_port=0,
                    dashboard_address="127.0.0.1:0",  # its HTTP server (health, metrics): loopback
                    silence_logs=logging.ERROR,
                    scheduler_kwargs={"allowed_failures": self.local_allowed_failures},
                )
                self._client = Client(self._local, set_as_default=False)
            except Exception as exc:
                self.close()
                raise ComputeClusterUnavailable(
                    f"the in-process Dask cluster ({self.local_workers} worker processes) would not start: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            log.info(
                "compute: in-process Dask cluster at %s, %d worker processes",
                self.address,
                self.local_workers,
            )
            return self
        try:
            self._client = Client(
                self.scheduler_address, timeout=self.connect_timeout_s, set_as_default=False
            )
        except Exception as exc:
            raise ComputeClusterUnavailable(
                f"no Dask scheduler answered at {self.scheduler_address} ({ADDRESS_SETTING}) within "
                f"{self.connect_timeout_s:g} s ({type(exc).__name__}: {exc}); start one with "
                "`dask scheduler` "
                f"and workers with `dask worker {self.scheduler_address}`, or unset {ADDRESS_SETTING} to "
                "compute in-process"
            ) from exc
        log.info("compute: connected to the Dask scheduler at %s (%d workers)", self.address, self.n_workers)
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._local is not None:
            self._local.close()
            self._local = None

    def __enter__(self) -> ComputeCluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError(
                "the compute cluster is not started (call start() or use it as a context manager)"
            )
        return self._client

    @property
    def address(self) -> str:
        scheduler = self.client.scheduler
        return str(scheduler.address) if scheduler is not None else str(self.scheduler_address)

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def wait_for_workers(self, n: int, timeout_s: float) -> None:
        """Block until `n` workers are connected; ComputeClusterUnavailable after `timeout_s`."""
        try:
            self.client.wait_for_workers(n, timeout=timeout_s)
        except Exception as exc:
            raise ComputeClusterUnavailable(
                f"{self.n_workers} of {n} Dask workers connected to {self.address} after {timeout_s:g} s"
            ) from exc

    # -- work --------------------------------------------------------------------------------------
    def submit(self, task: NetworkTask, timeout_s: float | None = None) -> PendingNetwork:
        """Send one network to the cluster, due back within `timeout_s` (else its own, else the default)."""
        limit_s = timeout_s if timeout_s is not None else task.timeout_s
        limit_s = self.task_timeout_s if limit_s is None else limit_s
        now = time.monotonic()
        future = self.client.submit(
            run_task,
            task,
            time.time() + limit_s,
            key=f"network-{task.network}-{uuid.uuid4().hex[:12]}",
            pure=False,
            retries=self.retries,
        )
        return PendingNetwork(task, future, now, now + limit_s)

    def as_completed(
        self, tasks: Iterable[NetworkTask], timeout_s: float | None = None
    ) -> Iterator[NetworkOutcome]:
        """Submit every task and yield each network's outcome as soon as it is known (in no set order).

        Every network yields exactly once, at the latest at its deadline.
        """
        pending: dict[str, PendingNetwork] = {}
        for task in tasks:
            if task.network in pending:
                raise ValueError(f"network {task.network!r} is twice in one batch")
            pending[task.network] = self.submit(task, timeout_s)
        yield from self._collect(pending)

    def compute(self, tasks: Sequence[NetworkTask], timeout_s: float | None = None) -> list[NetworkOutcome]:
        """One outcome per task, in the tasks' order: Computed (whole) or Failed (with why)."""
        by_network = {o.network: o for o in self.as_completed(tasks, timeout_s)}
        return [by_network[t.network] for t in tasks]

    def submit_networks(self, tasks: Sequence[NetworkTask], timeout_s: float | None = None) -> ComputeBatch:
        """`compute`, with the computed and the failed networks at hand."""
        return ComputeBatch.of(self.compute(tasks, timeout_s))

    def _collect(self, pending: dict[str, PendingNetwork]) -> Iterator[NetworkOutcome]:
        from distributed import wait

        while pending:
            for name in [n for n, p in pending.items() if p.future.done()]:
                yield self._outcome(pending.pop(name))
            now = time.monotonic()
            for name in [n for n, p in pending.items() if p.deadline <= now]:
                p = pending.pop(name)
                self._drop(p.future)
                yield Failed(
                    name, "timeout", f"not computed within {p.deadline - p.submitted:g} s", now - p.submitted
                )
            if not pending:
                return
            wait_s = max(0.0, min(p.deadline for p in pending.values()) - now)
            try:
                with self.client.as_current():  # wait() looks for its client there
                    wait([p.future for p in pending.values()], timeout=wait_s, return_when="FIRST_COMPLETED")
            except TimeoutError:
                continue
            except Exception:  # a client that lost its scheduler: the deadlines still bound the wait
                log.exception("compute: waiting for network results failed")
                time.sleep(min(wait_s, 0.5))

    def _outcome(self, p: PendingNetwork) -> NetworkOutcome:
        """The finished future's outcome; the future is released either way."""
        name = p.task.network
        remaining_s = max(p.deadline - time.monotonic(), 0.1)
        try:
            value: Any = p.future.result(timeout=remaining_s)
        except Exception as exc:
            return Failed(
                name, _failure_kind(exc), f"{type(exc).__name__}: {exc}", time.monotonic() - p.submitted
            )
        finally:
            self._drop(p.future)
        wall_s = time.monotonic() - p.submitted
        if isinstance(value, Refused):
            return Failed(name, value.kind, value.detail, wall_s)
        if not isinstance(value, NetworkResult):
            return Failed(
                name, "incomplete", f"a {type(value).__name__} came back instead of a result", wall_s
            )
        try:
            check_complete(p.task, value)
        except IncompleteResult as exc:
            return Failed(name, "incomplete", str(exc), wall_s)
        return Computed(name, value, wall_s)

    def _drop(self, future: Future) -> None:
        """Cancel (if still running) and forget a future, so its result does not stay in worker memory."""
        try:
            if not future.done():
                future.cancel()
            future.release()
        except Exception:
            log.debug("compute: could not release %s", future.key, exc_info=True)


def _failure_kind(exc: BaseException) -> FailureKind:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return "worker lost"
    if isinstance(exc, (CancelledError, OSError)):  # distributed's FutureCancelledError is one
        return "cluster unavailable"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "engine error"
