"""The unit of work: one network's envelope computation, as a pure function of what is shipped to it.

A `NetworkTask` carries everything the engine needs for one network (the network file with its sites,
agreements, tranches and queue positions; the derates in force now or later; the latest telemetry or
an external forecast; the sites held at fallback limits; the interval grid and the allocation rule),
so a worker needs no database, no credentials and no state: it can die at any moment and the task
runs again elsewhere with the same result. `compute_network` is what a worker runs; the publisher may
run it in-process too, and gets the same `NetworkResult`.

The engine is the one the single-network recomputation runs (`compute_planned` over
`compute_envelopes`, recompute/run.py); the forecast is built the way the run builds it
(telemetry carried forward over the sites' profiles).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gridshare.envelopes.compute import compute_envelopes
from gridshare.envelopes.forecast import Forecast, Telemetry, telemetry_over_profiles
from gridshare.envelopes.planned_derates import PlannedEnvelopes, compute_planned
from gridshare.fallback.hold import hold_at_fallback
from gridshare.grid.derates import apply_derates
from gridshare.grid.netfile import NetworkFile

if TYPE_CHECKING:
    pass


class DerateLike(Protocol):
    """What a stored derate offers (store.models.AssetDerate has these columns)."""

    asset: str
    factor: float
    from_s: int
    until_s: int | None


@dataclass(frozen=True)
class Derate:
    """An operator's derate (factor < 1) or outage (factor 0) of one asset, as plain values.

    The store's rows are not shipped (they belong to a database session); these four values are all
    the engine reads of them.
    """

    asset: str
    factor: float
    from_s: int
    until_s: int | None = None

    @classmethod
    def of(cls, row: DerateLike) -> Derate:
        return cls(
            str(row.asset),
            float(row.factor),
            int(row.from_s),
            None if row.until_s is None else int(row.until_s),
        )

    def in_force(self, at_s: int) -> bool:
        return self.from_s <= at_s and (self.until_s is None or self.until_s > at_s)


@dataclass(frozen=True)
class HeldLimits:
    """Fallback limits (W) a site whose own data is untrusted is held to this run."""

    export_limit_w: float
    import_limit_w: float


@dataclass(frozen=True)
class NetworkTask:
    """Everything one network's computation needs. Picklable; no store rows, no sessions, no clocks.

    `inputs_key` is the publisher's fingerprint of the inputs it read (network version, derates, ...):
    carried to the result untouched, so the publisher can tell a result computed from inputs that have
    changed since. `timeout_s` bounds how long the caller waits for this network (None: the cluster's
    default); past it the network is reported failed and its result, should it come, is dropped.
    """

    network: str  # unique within one batch: the name results and failures are reported under
    nf: NetworkFile
    now_s: int
    start_s: int
    horizon_s: int
    interval_s: int
    policy: str = "pro-rata"
    derates: tuple[Derate, ...] = ()  # in force now or later (not cleared, not expired)
    telemetry: Mapping[str, Telemetry] = field(default_factory=dict)  # by network site id
    forecast: Forecast | None = None  # an external forecast; None: telemetry over profiles
    held: Mapping[str, HeldLimits] = field(default_factory=dict)  # by network site id
    forecast_margin_fraction: float | None = None
    #: (export, import) W by network site id: each dynamic site's fallback limit, below which no envelope
    #: goes (envelopes/minimum.py)
    minimum_w: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    inputs_key: tuple[object, ...] = ()
    timeout_s: float | None = None

    @property
    def n_intervals(self) -> int:
        return self.horizon_s // self.interval_s

    @property
    def n_sites(self) -> int:
        return len(self.nf.sites)


@dataclass(frozen=True)
class NetworkResult:
    """One network's computed envelopes: whole, or not at all (`check_complete`).

    `planned` is what the publisher publishes today (per-site, per-interval export and import limits in
    `planned.envelopes`, per-constraint rating, forecast, headroom and binding in `planned.series`).
    The per-stretch constraint reports are dropped from `planned.envelopes.constraints` before shipping:
    `series` holds the same figures over the whole horizon, and they are a tenth of the bytes.
    """

    network: str
    inputs_key: tuple[object, ...]
    planned: PlannedEnvelopes
    compute_s: float  # engine time on the worker (forecast included), wall clock
    cpu_s: float  # the same, in processor time of the worker's thread: what it costs, however loaded
    worker: str  # host:pid that computed it
    finished_s: float  # wall clock when the worker finished

    @property
    def site_ids(self) -> tuple[str, ...]:
        return self.planned.envelopes.site_ids

    @property
    def export_limit_w(self) -> np.ndarray:
        return self.planned.envelopes.export_limit_w

    @property
    def import_limit_w(self) -> np.ndarray:
        return self.planned.envelopes.import_limit_w


class IncompleteResult(ValueError):
    """A result that does not cover every interval and site it should, or holds an impossible limit."""


def telemetry_forecast(task: NetworkTask, start: datetime) -> Forecast | None:
    """Recent telemetry carried forward over the sites' profiles (None without telemetry).

    Sites cut off by an outage now get no forecast: they carry no flow.
    """
    now = [d for d in task.derates if d.in_force(task.now_s)]
    return telemetry_over_profiles(
        task.nf.network,
        task.nf.sites,
        task.telemetry,
        apply_derates(task.nf.network, now).isolated_nodes,
        start,
        task.interval_s,
        task.n_intervals,
        issued_at=datetime.fromtimestamp(task.now_s, UTC),
    )


def check_complete(task: NetworkTask, result: NetworkResult) -> None:
    """Raise IncompleteResult unless `result` covers every interval and site of `task` with real limits.

    Run on the worker before a result leaves it and again by the caller after it arrives: a result
    is published whole or not at all.
    """
    if result.network != task.network:
        raise IncompleteResult(f"result for {result.network!r} handed back for {task.network!r}")
    env = result.planned.envelopes
    n = task.n_intervals
    known = {s.id for s in task.nf.sites}
    cut_off = {s.id for s in task.nf.sites if s.node in result.planned.isolated_throughout}
    if len(env.interval_starts) != n or env.interval_s != task.interval_s:
        raise IncompleteResult(f"{task.network}: {len(env.interval_starts)} of {n} intervals")
    if int(env.interval_starts[0].timestamp()) != task.start_s:
        raise IncompleteResult(
            f"{task.network}: horizon starts at {env.interval_starts[0]}, not {task.start_s}"
        )
    if len(set(env.site_ids)) != len(env.site_ids) or not set(env.site_ids) <= known:
        raise IncompleteResult(f"{task.network}: site columns repeat or name sites it does not have")
    if set(env.site_ids) | cut_off != known:
        missing = sorted(known - cut_off - set(env.site_ids))
        raise IncompleteResult(
            f"{task.network}: no limits for {len(missing)} sites ({', '.join(missing[:3])})"
        )
    for name in ("export_limit_w", "import_limit_w"):
        limits = getattr(env, name)
        if limits.shape != (n, len(env.site_ids)):
            raise IncompleteResult(f"{task.network}: {name} is {limits.shape}, not {(n, len(env.site_ids))}")
        if not np.all(np.isfinite(limits)) or np.any(limits < 0):
            raise IncompleteResult(f"{task.network}: {name} holds a negative or non-finite limit")
    for direction, series in result.planned.series.items():
        if series.n_intervals != n:
            raise IncompleteResult(
                f"{task.network}: {direction} constraints over {series.n_intervals} of {n}"
            )


def compute_network(task: NetworkTask) -> NetworkResult:
    """One network's envelopes over the task's horizon (what a worker runs; pure but for timing).

    Bad input (an invalid network, an unknown policy, a forecast not covering the horizon) raises a
    ValueError (NetworkError names the field): the same input fails the same way anywhere, so callers
    do not retry it.
    """
    t0, c0 = time.perf_counter(), time.thread_time()
    start = datetime.fromtimestamp(task.start_s, UTC)
    forecast = task.forecast if task.forecast is not None else telemetry_forecast(task, start)
    planned = compute_planned(
        hold_at_fallback(task.nf, task.held),
        task.derates,
        start,
        task.horizon_s,
        task.interval_s,
        task.policy,
        forecast,
        engine=compute_envelopes,
        forecast_margin_fraction=task.forecast_margin_fraction,
        minimum_w=task.minimum_w,
    )
    planned = replace(planned, envelopes=replace(planned.envelopes, constraints={}))
    result = NetworkResult(
        network=task.network,
        inputs_key=task.inputs_key,
        planned=planned,
        compute_s=time.perf_counter() - t0,
        cpu_s=time.thread_time() - c0,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        finished_s=time.time(),
    )
    check_complete(task, result)
    return result
