"""The envelope engine's schedule: a run every `recompute_interval_s`, on operator changes, and deadlines.

A run (recompute/run.py) starts now and then every `recompute_interval_s` on the engine's clock, and
the watch starts one as soon as an operator changes a constraint. Runs never overlap in one process,
and only the holder of the publisher lock (store/publication/lease.py) computes or publishes: a
standby instance tries for the lock every `publisher_poll_s` and takes over within about that long
of the publisher's death, and every publication is fenced, so two instances never publish at once.
A ticker of its own, which no running computation blocks, looks at the derate deadlines
(recompute/deadline_watch.py), themselves on the engine's clock.

The intervals that say how often to *look* (for changes, for the lock, at the deadlines) are wall
time: they are polling cadences, not times in the engine's world. Everything with a meaning in that
world (when the next run is due, when a deadline passes, when envelopes end) is on the injectable
clock, so the simulator runs the same schedule on simulated time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gridshare.core.runtime import Runtime
from gridshare.recompute.budget import BudgetRunner
from gridshare.recompute.deadline_watch import DeadlineWatch
from gridshare.recompute.deadlines import Change
from gridshare.recompute.expiry import check_expiry
from gridshare.recompute.failure import FallbackPolicy
from gridshare.recompute.inputs import inputs_fingerprint
from gridshare.recompute.outcome import Outcome
from gridshare.recompute.run import EnvelopeRun, ForecastSource
from gridshare.recompute.state import EngineState
from gridshare.store.publication.lease import Publisher, holder_name
from gridshare.store.publication.status import StatusBoard

log = logging.getLogger("gridshare.recompute")

#: Wall seconds between two looks at the deadlines and the schedule (they themselves are on the
#: engine's clock).
TICK_S = 0.2


class Repeating:
    """`job` every `interval_s` as told by `now`, in a thread of its own; missed runs coalesce into one."""

    def __init__(
        self,
        name: str,
        job: Callable[[], object],
        interval_s: float,
        now: Callable[[], float],
        *,
        at_once: bool,
    ) -> None:
        self.name = name
        self._job = job
        self._interval_s = interval_s
        self._now = now
        self._at_once = at_once
        self._thread: threading.Thread | None = None

    def start(self, stopping: threading.Event) -> None:
        self._thread = threading.Thread(target=self._loop, args=(stopping,), name=self.name, daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the job running now, if any, like a scheduler shut down with wait=True."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self, stopping: threading.Event) -> None:
        due = self._now() + (0.0 if self._at_once else self._interval_s)
        while not stopping.is_set():
            if self._now() >= due:
                try:
                    self._job()
                except Exception:  # the schedule must outlive any one failure
                    log.exception("engine job %s", self.name)
                now = self._now()
                while due <= now:
                    due += self._interval_s
            stopping.wait(TICK_S)


class Recomputer:
    """The engine in one process: holds the right to publish, and runs, watches and ticks on schedule."""

    def __init__(
        self, ctx: Runtime, holder: str | None = None, forecast_source: ForecastSource | None = None
    ) -> None:
        self.ctx = ctx
        self.holder = holder or holder_name()
        self.status = StatusBoard(ctx.sessions)
        self.publisher = Publisher(ctx.engine, ctx.sessions, self.holder, ctx.now_s)
        self.state = EngineState(ctx, self.publisher, self.status)
        self.policy = FallbackPolicy(self.state)
        self.deadlines = DeadlineWatch(self.state, self.policy)
        self._budget = BudgetRunner()
        self.run = EnvelopeRun(self.state, self.policy, self._budget, forecast_source)
        self._run_lock = threading.Lock()
        self._jobs: list[Repeating] = []
        self._immediate: list[threading.Thread] = []  # runs started on taking over as publisher
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._next_discovery = 0.0  # monotonic: when the ticker next looks for unpublished changes

    # -- the right to publish ----------------------------------------------------------------------
    def ensure_publisher(self) -> bool:
        """Hold the publisher lock, taking it if it is free; on taking it, pick up what is pending."""
        was = self.publisher.epoch
        if not self.publisher.ensure():
            return False
        if self.publisher.epoch != was:
            self.deadlines.took_over()
        return True

    # -- one run -----------------------------------------------------------------------------------
    def run_once(self, reason: str = "scheduled") -> Outcome:
        with self._run_lock:
            return self._attempt(reason)

    def _attempt(self, reason: str) -> Outcome:
        if not self.ensure_publisher():
            log.debug("recomputation (%s) not run: another instance is the publisher", reason)
            return Outcome("skipped", reason, detail="another instance is the publisher")
        log.debug("recomputation (%s) started", reason)
        # A change already past its deadline (a publisher that just took over from a dead one) gets its
        # fallback first: a full recomputation would compete with it for the processor.
        self.deadlines.check_deadlines()
        return self.run.attempt(reason)

    # -- derates: recompute at once, fallback by a deadline ------------------------------------------
    def discover(self) -> list[Change]:
        """Give every change the published envelopes do not cover yet its deadline; returns new ones."""
        return self.deadlines.discover()

    def check_deadlines(self) -> bool:
        """Publish fallback for changes past their deadline (on the engine's clock); True if it did."""
        return self.deadlines.check_deadlines()

    # -- scheduling --------------------------------------------------------------------------------
    def start(self) -> None:
        """Run now, then every `recompute_interval_s`; tick for the publisher lock and the deadlines."""
        settings = self.ctx.settings
        self._stopping.clear()
        self._jobs = [
            Repeating(
                "recompute", self.run_once, settings.recompute_interval_s, self.ctx.clock.now, at_once=True
            ),
            Repeating("recompute-watch", self.watch, settings.change_poll_s, time.monotonic, at_once=False),
        ]
        for job in self._jobs:
            job.start(self._stopping)
        self._ticker = threading.Thread(target=self._tick_loop, name="recompute-ticker", daemon=True)
        self._ticker.start()
        log.info(
            "recomputation every %d s (and within %d s of an operator change) over %d h at %d-minute "
            "intervals (%s); on failure: %s",
            settings.recompute_interval_s,
            settings.change_poll_s,
            settings.envelope_horizon_s // 3600,
            settings.envelope_interval_s // 60,
            settings.allocation_policy,
            settings.failure_policy,
        )

    def watch(self) -> None:
        """Recompute as soon as an operator changes the network, a rating or a derate, or asks for it.

        Polling a fingerprint of those tables works across processes and servers sharing the database.
        A run already in progress is not waited for: it will not publish (its constraints are outdated),
        the next tick recomputes, and the deadline covers the time in between.
        """
        with self.ctx.sessions() as session:
            seen = inputs_fingerprint(session)
        check_expiry(self.state, self.ctx.now_s())
        if self.state.inputs_seen is None or seen == self.state.inputs_seen:
            return
        self.deadlines.discover()
        if not self._run_lock.acquire(blocking=False):
            return
        try:
            self._attempt("constraint changed")
        finally:
            self._run_lock.release()

    def tick(self) -> None:
        """One look at the deadlines (and, every `change_poll_s`, for new changes to give one)."""
        wall = time.monotonic()
        if wall >= self._next_discovery:
            self._next_discovery = wall + self.ctx.settings.change_poll_s
            if self.deadlines.discover() and not self.deadlines.check_deadlines():
                self.deadlines.prepare_fallback()
        self.deadlines.check_deadlines()

    def _tick_loop(self) -> None:
        """Takeover and deadlines, in a thread of their own: no running computation can delay them."""
        next_lock = 0.0
        while not self._stopping.wait(TICK_S):
            try:
                wall = time.monotonic()
                if wall >= next_lock:
                    next_lock = wall + self.ctx.settings.publisher_poll_s
                    was = self.publisher.epoch
                    if self.ensure_publisher() and was is None:
                        self._run_now("took over as publisher")
                if self.publisher.epoch is not None:
                    self.tick()
            except Exception:  # the ticker must outlive any one failure
                log.exception("engine ticker")

    def _run_now(self, reason: str) -> None:
        """An immediate run in a thread of its own, so the ticker keeps watching the deadlines meanwhile."""
        thread = threading.Thread(target=self.run_once, args=(reason,), name="recompute-now", daemon=True)
        self._immediate = [t for t in self._immediate if t.is_alive()]
        self._immediate.append(thread)
        thread.start()

    def stop(self) -> None:
        """Stop scheduling, ticking, and hand the publisher lock to whoever wants it next."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
            self._ticker = None
        for job in self._jobs:
            job.join()
        self._jobs = []
        for thread in self._immediate:  # a run under way finishes before the lock is handed on
            thread.join()
        self._immediate = []
        self.run.close()
        self.publisher.release()
