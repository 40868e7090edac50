"""The envelope engine's schedule: a run every `recompute_interval_s`, on operator changes, and deadlines.

The store holds many networks; each is recomputed and published on its own (recompute/network_engine.py):
a change to network B recomputes B only, and a failure on B puts B's sites on fallback and leaves A
alone. A run (recompute/run.py) of every network starts now and then every `recompute_interval_s` on
the engine's clock, and the watch starts one for a network as soon as an operator changes one of its
constraints. Runs never overlap in one process,
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
from concurrent.futures import ThreadPoolExecutor

from gridshare.compute.cluster import ComputeCluster
from gridshare.core.runtime import Runtime
from gridshare.recompute.budget import BudgetRunner
from gridshare.recompute.deadlines import Change
from gridshare.recompute.expiry import check_expiry
from gridshare.recompute.failure import FallbackPolicy
from gridshare.recompute.inputs import inputs_fingerprints
from gridshare.recompute.network_engine import NetworkEngine
from gridshare.recompute.outcome import Outcome
from gridshare.recompute.run import ForecastSource, uses_cluster
from gridshare.store.publication.lease import Publisher, holder_name
from gridshare.store.publication.network_docs import active_names
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
    """The engine in one process: holds the right to publish, and runs, watches and ticks every network
    on schedule. One publisher lock covers all networks, so each network has exactly one publisher."""

    def __init__(
        self, ctx: Runtime, holder: str | None = None, forecast_source: ForecastSource | None = None
    ) -> None:
        self.ctx = ctx
        self.holder = holder or holder_name()
        self.status = StatusBoard(ctx.sessions)
        self.publisher = Publisher(ctx.engine, ctx.sessions, self.holder, ctx.now_s)
        self._budget = BudgetRunner()
        self._forecast_source = forecast_source
        self._engines: dict[str, NetworkEngine] = {}
        self._engines_lock = threading.Lock()
        self._cluster: ComputeCluster | None = None
        self._cluster_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._jobs: list[Repeating] = []
        self._immediate: list[threading.Thread] = []  # runs started on taking over as publisher
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._next_discovery = 0.0  # monotonic: when the ticker next looks for unpublished changes

    # -- the networks ------------------------------------------------------------------------------
    def networks(self) -> dict[str, NetworkEngine]:
        """One engine per network in service, as the store says now (the known ones if it cannot)."""
        try:
            with self.ctx.sessions() as session:
                names = active_names(session)
        except Exception:
            log.exception("could not read which networks are in service")
            with self._engines_lock:
                return dict(self._engines)
        with self._engines_lock:
            for name in names:
                if name not in self._engines:
                    engine = NetworkEngine(
                        self.ctx,
                        name,
                        self.publisher,
                        self.status,
                        self._budget,
                        self._forecast_source,
                        self._shared_cluster,
                    )
                    if self.publisher.epoch is not None:
                        engine.deadlines.took_over()
                    self._engines[name] = engine
            for gone in set(self._engines) - set(names):
                log.info("network %s is no longer in service: not recomputed any more", gone)
                del self._engines[gone]
            return dict(self._engines)

    def network(self, name: str) -> NetworkEngine:
        """The engine of network `name` (KeyError: not in service)."""
        return self.networks()[name]

    @property
    def policy(self) -> FallbackPolicy:
        """The failure policy of the only network (for a single-feeder store)."""
        (only,) = self.networks().values()
        return only.policy

    def _shared_cluster(self) -> ComputeCluster:
        """The Dask cluster every network's computation goes to (connected on first use)."""
        with self._cluster_lock:
            if self._cluster is None:
                self._cluster = ComputeCluster.from_settings(self.ctx.settings).start()
            return self._cluster

    # -- the right to publish ----------------------------------------------------------------------
    def ensure_publisher(self) -> bool:
        """Hold the publisher lock, taking it if it is free; on taking it, pick up what is pending."""
        was = self.publisher.epoch
        if not self.publisher.ensure():
            return False
        if self.publisher.epoch != was:
            for engine in self.networks().values():
                engine.deadlines.took_over()
        return True

    # -- one run -----------------------------------------------------------------------------------
    def run_once(self, reason: str = "scheduled", network: str | None = None) -> Outcome:
        """Recompute and publish every network (or the one named); one network's failure stops no other.

        Returns the network's outcome, or for several, one that is published only if all were.
        """
        with self._run_lock:
            return self._attempt(reason, None if network is None else [network])

    def _attempt(self, reason: str, names: list[str] | None, *, wait: bool = True) -> Outcome:
        """Run the networks named (all: None). `wait` False: a network whose run is under way is left
        to that run (which publishes the newest inputs or is voided by them and repeated)."""
        if not self.ensure_publisher():
            log.debug("recomputation (%s) not run: another instance is the publisher", reason)
            return Outcome("skipped", reason, detail="another instance is the publisher")
        engines = self.networks()
        chosen = sorted(engines) if names is None else [n for n in names if n in engines]
        if not chosen:
            log.info("recomputation (%s) skipped: no network loaded", reason)
            return Outcome("skipped", reason, detail="no network loaded")

        def one(name: str) -> Outcome:
            engine = engines[name]
            if not engine.lock.acquire(blocking=wait):
                return Outcome("skipped", reason, detail=f"a run of {name} is under way")
            try:
                log.debug("recomputation (%s) of %s started", reason, name)
                # A change already past its deadline (a publisher that just took over from a dead one)
                # gets its fallback first: a full recomputation would compete with it for the processor.
                engine.deadlines.check_deadlines()
                return engine.run.attempt(reason)
            finally:
                engine.lock.release()

        parallel = min(len(chosen), self.ctx.settings.compute_parallel_networks)
        if not uses_cluster(self.ctx.settings) or parallel < 2:
            return combined(reason, {name: one(name) for name in chosen})
        # On a cluster, networks compute side by side: each waits for its own task in a thread here and
        # publishes as soon as it is back (publications still take turns on the publisher's lease row).
        with ThreadPoolExecutor(parallel, thread_name_prefix="recompute-net") as pool:
            outcomes = dict(zip(chosen, pool.map(one, chosen), strict=True))
        return combined(reason, outcomes)

    # -- derates: recompute at once, fallback by a deadline ------------------------------------------
    def discover(self) -> list[Change]:
        """Give every change the published envelopes do not cover yet its deadline; returns new ones."""
        return [c for engine in self.networks().values() for c in engine.deadlines.discover()]

    def check_deadlines(self) -> bool:
        """Publish fallback for changes past their deadline (on the engine's clock); True if it did."""
        published = [engine.deadlines.check_deadlines() for engine in self.networks().values()]
        return any(published)

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
            "recomputation every %d s for every network (and within %d s of an operator change to one) "
            "over %d h at %d-minute intervals (%s); on failure: %s",
            settings.recompute_interval_s,
            settings.change_poll_s,
            settings.envelope_horizon_s // 3600,
            settings.envelope_interval_s // 60,
            settings.allocation_policy,
            settings.failure_policy,
        )

    def watch(self) -> None:
        """Recompute a network as soon as an operator changes it, a rating or a derate of it, or asks.

        Polling fingerprints of those tables (a fixed number of queries for all networks) works across
        processes and servers sharing the database. A scheduled run of every network under way does
        not hold the change back: the changed network runs now, beside it. A run of that same network
        under way is not waited for: it will not publish (its constraints are outdated), the next
        look recomputes, and the deadline covers the time in between.
        """
        engines = self.networks()
        with self.ctx.sessions() as session:
            seen = inputs_fingerprints(session, sorted(engines))
        now_s = self.ctx.now_s()
        changed = []
        for name, engine in engines.items():
            check_expiry(engine.state, now_s)
            before = engine.state.inputs_seen
            if seen.get(name) != before:  # None: a network new to this process, never run here
                changed.append(name)
        if not changed:
            return
        for name in changed:
            engines[name].deadlines.discover()
        self._attempt("constraint changed", changed, wait=False)

    def tick(self) -> None:
        """One look at the deadlines (and, every `change_poll_s`, for new changes to give one)."""
        wall = time.monotonic()
        engines = self.networks()
        if wall >= self._next_discovery:
            self._next_discovery = wall + self.ctx.settings.change_poll_s
            for engine in engines.values():
                if engine.deadlines.discover() and not engine.deadlines.check_deadlines():
                    engine.deadlines.prepare_fallback()
        for engine in engines.values():
            engine.deadlines.check_deadlines()

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
        with self._cluster_lock:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None
        self.publisher.release()


def combined(reason: str, outcomes: dict[str, Outcome]) -> Outcome:
    """One network's outcome as it is; several: published only if every network published."""
    if len(outcomes) == 1:
        return next(iter(outcomes.values()))
    bad = {name: o for name, o in outcomes.items() if o.status != "published"}
    if not bad:
        return Outcome(
            "published",
            reason,
            detail=f"{len(outcomes)} networks published",
            compute_s=sum(o.compute_s for o in outcomes.values()),
            publish_s=sum(o.publish_s for o in outcomes.values()),
        )
    worst = "failed" if any(o.status == "failed" for o in bad.values()) else "skipped"
    detail = "; ".join(f"{name}: {o.status} ({o.detail})" for name, o in sorted(bad.items()))
    return Outcome(worst, reason, detail=detail[:2000])
