"""Glue: network + sites + horizon + policy -> per-site, per-interval export and import limits.

Forecast every uncontrolled flow, hold fixed connections at their agreed limits, build one
allocation problem per direction, let `allocation.rules.allocate` share the headroom, and
report each constraint's loading and whether it binds, in its own units (W or pu).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import numpy as np

from gridshare.allocation.problem import AllocationProblem, AllocationResult, Infeasibility
from gridshare.envelopes.forecast import Forecast, ProfileSpec, profile_forecast
from gridshare.envelopes.forecast_aware import forecast_capped
from gridshare.envelopes.headroom import (
    DIRECTIONS,
    Direction,
    DirectionProblem,
    FlexibleSites,
    build_direction_problem,
    dense_queue,
)
from gridshare.envelopes.minimum import allocate_with_minimum
from gridshare.grid.agreements import AgreementBounds, IntervalTimes, agreement_bounds
from gridshare.grid.network import Network, NetworkError, Site, validate_sites

if TYPE_CHECKING:
    from gridshare.allocation.rules import Policy

POLICIES: tuple[str, ...] = ("pro-rata", "tranche", "lifo", "max-total")
BINDING_TOLERANCE = 1e-6  # relative; used only when no allocation is needed (no flexible sites)


def node_series_id(node_name: str) -> str:
    """Forecast id of a node's uncontrolled customers, distinct from any site id."""
    return f"node:{node_name}"


@dataclass(frozen=True)
class ConstraintReport:
    """Every constraint of one direction, per interval, in its own unit (W thermal, pu voltage)."""

    direction: Direction
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    assets: tuple[str, ...]
    limit: np.ndarray  # (n_constraints,) rating W or voltage bound pu
    forecast: np.ndarray  # (n_intervals, n_constraints) before flexible sites
    value: np.ndarray  # (n_intervals, n_constraints) with flexible sites at their limits
    headroom: np.ndarray  # (n_intervals, n_constraints) what was left for flexible sites
    binding: np.ndarray  # (n_intervals, n_constraints) bool


@dataclass(frozen=True)
class EnvelopeInfeasibility:
    """Floors or fixed flows alone overload a constraint in this interval."""

    direction: Direction
    interval_start: datetime
    constraint: str
    excess: float  # W for thermal, pu for voltage


@dataclass(frozen=True)
class EnvelopeSet:
    """The result: limits for every site (fixed sites at their agreed limit) and what binds."""

    site_ids: tuple[str, ...]
    flexible: np.ndarray  # (n_sites,) bool: limits that came from the allocation
    interval_starts: tuple[datetime, ...]
    interval_s: int
    policy: str
    export_limit_w: np.ndarray  # (n_intervals, n_sites)
    import_limit_w: np.ndarray  # (n_intervals, n_sites)
    forecast_export_w: np.ndarray  # (n_intervals, n_sites) forecast net export (negative = import)
    constraints: dict[Direction, ConstraintReport]
    infeasibilities: tuple[EnvelopeInfeasibility, ...]
    forecast_issued_at: datetime
    #: None: issued as agreed; a share: forecast-aware with this margin (envelopes/forecast_aware.py)
    forecast_margin_fraction: float | None = None
    #: (direction, interval start) whose constraints could not carry every site's guaranteed minimum
    #: (`minimum_w`): there the rule's allocation stands and some fallback is not safe.
    minimum_not_carried: tuple[tuple[Direction, datetime], ...] = ()
    #: (interval, site) limits raised to the site's guaranteed minimum, per direction
    minimum_raised: dict[Direction, int] = field(default_factory=dict)

    @property
    def n_intervals(self) -> int:
        return len(self.interval_starts)

    def binding_count(self, direction: Direction) -> int:
        """How many (interval, constraint) pairs bind in one direction."""
        return int(self.constraints[direction].binding.sum())

    def expected_curtailment_wh(self) -> np.ndarray:
        """Per site: forecast export above the export limit, as energy over the horizon.

        The estimate developers ask for before financing a flexible connection.
        """
        excess_w = np.clip(self.forecast_export_w - self.export_limit_w, 0.0, None)
        return excess_w.sum(axis=0) * self.interval_s / 3600.0


def _interval_starts(start: datetime, horizon_s: int, interval_s: int) -> np.ndarray:
    if start.tzinfo is None:
        raise NetworkError("must carry a time zone (UTC)", "start")
    if interval_s <= 0:
        raise NetworkError(f"must be > 0 s, got {interval_s}", "interval_s")
    if horizon_s <= 0:
        raise NetworkError(f"must be > 0 s, got {horizon_s}", "horizon_s")
    if horizon_s % interval_s:
        raise NetworkError(f"{horizon_s} s is not a whole number of {interval_s} s intervals", "horizon_s")
    return int(start.timestamp()) + interval_s * np.arange(horizon_s // interval_s, dtype=np.int64)


def _forecast_series(
    network: Network,
    sites: Sequence[Site],
    start: datetime,
    interval_s: int,
    epochs: np.ndarray,
    forecasts: Forecast | None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], datetime]:
    """(load_w, generation_w) per id: from `forecasts` where it has the id, profiles otherwise."""
    specs = {s.id: ProfileSpec(s.pv_w, s.load_w, s.load_profile) for s in sites}
    specs.update(
        {node_series_id(n.name): ProfileSpec(n.pv_w, n.load_w, n.load_profile) for n in network.nodes}
    )
    try:
        profile = profile_forecast(
            specs,
            start,
            interval_s,
            len(epochs),
            tz=network.timezone,
            latitude_deg=network.latitude_deg,
            longitude_deg=network.longitude_deg,
            issued_at=forecasts.issued_at if forecasts is not None else start,
        )
    except KeyError as exc:
        raise NetworkError(str(exc.args[0]), "load_profile") from None
    series = {name: (profile.load_w[:, i], profile.generation_w[:, i]) for i, name in enumerate(profile.ids)}
    issued_at = profile.issued_at
    if forecasts is not None:
        known = [i for i in forecasts.ids if i in series]
        try:
            load, gen = forecasts.on_grid(epochs, known)
        except ValueError as exc:
            raise NetworkError(str(exc), "forecasts") from None
        for k, name in enumerate(known):
            series[name] = (load[:, k], gen[:, k])
        issued_at = forecasts.issued_at
    return series, issued_at


def _flexible_sites(
    direction: Direction,
    flexible: Sequence[tuple[Site, AgreementBounds]],
    node_index: dict[str, int],
    forecast_cap: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> FlexibleSites:
    """The dynamic sites as arrays; `forecast_cap` = (wanted_w, known, margin) caps them forecast-aware."""
    n = len(flexible)
    floors = [getattr(b, f"{direction}_floor_w") for _, b in flexible]
    caps = [getattr(b, f"{direction}_cap_w") for _, b in flexible]
    n_int = len(caps[0]) if caps else 0
    floor_w = np.column_stack(floors) if n else np.zeros((n_int, 0))
    agreed_w = np.column_stack(caps) if n else np.zeros((n_int, 0))
    cap_w = agreed_w
    if forecast_cap is not None and n:
        wanted_w, known, margin = forecast_cap
        cap_w = forecast_capped(floor_w, agreed_w, wanted_w, margin, known)
    # Pro-rata by agreed capacity unless the file says otherwise (a forecast cap never changes a
    # site's weight: its share of what is left stays its agreed share); weights must be > 0.
    weight = np.array(
        [
            s.weight if s.weight is not None else max(float(c.max()) if len(c) else 0.0, 1.0)
            for (s, _), c in zip(flexible, caps, strict=True)
        ],
        dtype=float,
    )
    steps = [s.max_step_w for s, _ in flexible]
    max_step_w = (
        None if all(x is None for x in steps) else np.array([np.inf if x is None else x for x in steps])
    )
    return FlexibleSites(
        site_ids=tuple(s.id for s, _ in flexible),
        node_index=np.array([node_index[s.node] for s, _ in flexible], dtype=int),
        floor_w=floor_w,
        cap_w=cap_w,
        weight=weight,
        queue_position=dense_queue([s.queue_position for s, _ in flexible]),
        max_step_w=max_step_w,
    )


def _forecast_caps(
    flexible: Sequence[tuple[Site, AgreementBounds]],
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    margin: float,
) -> dict[Direction, tuple[np.ndarray, np.ndarray, float]]:
    """Per direction: (flow each flexible site is forecast to want, whether it has a forecast, margin).

    A site has an export forecast when it has generation (a `pv_w` or a forecast series with some),
    and an import forecast when it has load; without one it keeps its agreed cap.
    """
    if not flexible:
        return {}
    load = np.column_stack([series[s.id][0] for s, _ in flexible])
    gen = np.column_stack([series[s.id][1] for s, _ in flexible])
    has_gen = np.array([s.pv_w > 0 for s, _ in flexible]) | (gen.max(axis=0) > 0)
    has_load = np.array([s.load_w > 0 for s, _ in flexible]) | (load.max(axis=0) > 0)
    return {"export": (gen - load, has_gen, margin), "import": (load - gen, has_load, margin)}


def _no_flexible_result(problem: AllocationProblem) -> AllocationResult:
    """Nothing to share: still report which constraints fixed flows alone overload."""
    n_int, n_con = problem.headroom.shape
    loading = np.zeros((n_int, n_con))
    scale = np.maximum(np.abs(problem.headroom), 1.0)
    infeasible = [
        Infeasibility(
            interval=int(t), constraint=problem.constraint_names[c], excess=float(-problem.headroom[t, c])
        )
        for t, c in zip(*np.nonzero(problem.headroom < 0), strict=True)
    ]
    return AllocationResult(
        limit_w=np.zeros((n_int, 0)),
        loading=loading,
        binding=np.abs(problem.headroom) <= BINDING_TOLERANCE * scale,
        infeasible=infeasible,
    )


def _default_allocate() -> Callable[[AllocationProblem, Policy], AllocationResult]:
    try:
        from gridshare.allocation.rules import allocate
    except ImportError as exc:  # pragma: no cover - depends on the sibling package being present
        raise RuntimeError("allocation.rules is not available; the allocation package is incomplete") from exc
    return allocate


def compute_envelopes(
    network: Network,
    sites: Sequence[Site],
    start: datetime,
    horizon_s: int = 86400,
    interval_s: int = 300,
    policy: str = "pro-rata",
    forecasts: Forecast | None = None,
    forecast_margin_fraction: float | None = None,
    minimum_w: Mapping[str, tuple[float, float]] | None = None,
) -> EnvelopeSet:
    """Per-site, per-interval export and import limits over `horizon_s` from `start`.

    `forecast_margin_fraction` None issues envelopes as agreed (each flexible site's cap is its
    agreed capacity); a number makes them forecast-aware: each flexible site with a forecast in a
    direction is capped at that forecast plus this share of its agreed capacity
    (`envelopes/forecast_aware.py`). `minimum_w` gives flexible sites a guaranteed (export, import)
    minimum by site id, their fallback limits: no envelope falls below it where the interval can carry
    it (`envelopes/minimum.py`: a device on its default beside neighbours on their envelopes stays
    safe). Raises NetworkError (a ValueError naming the field) for invalid input.
    """
    if forecast_margin_fraction is not None and not (
        math.isfinite(forecast_margin_fraction) and forecast_margin_fraction >= 0
    ):
        raise NetworkError(
            f"must be a share >= 0, got {forecast_margin_fraction}", "forecast_margin_fraction"
        )
    if policy not in POLICIES:
        raise NetworkError(f"unknown policy {policy!r} (choose from {', '.join(POLICIES)})", "policy")
    rule = cast("Policy", policy)  # one of POLICIES, just checked (the same names as allocation.rules')
    topo = network.topology  # validates the network
    validate_sites(network, sites)
    epochs = _interval_starts(start, horizon_s, interval_s)
    times = IntervalTimes.build(epochs, network.timezone)
    n_int, n_nodes = len(epochs), len(network.nodes)

    bounds = [agreement_bounds(s.agreement, times, s.max_export_w, s.max_import_w) for s in sites]
    series, issued_at = _forecast_series(network, sites, start, interval_s, epochs, forecasts)

    # Net export of everything not flexible, per node: uncontrolled customers at forecast, then
    # fixed sites at their agreed limit (export problem: exporting at the cap; import: importing).
    background = np.zeros((n_int, n_nodes))
    for n, node in enumerate(network.nodes):
        load, gen = series[node_series_id(node.name)]
        background[:, n] = gen - load
    fixed = {d: background.copy() for d in DIRECTIONS}
    for site, b in zip(sites, bounds, strict=True):
        if not b.flexible:
            n = topo.node_index[site.node]
            fixed["export"][:, n] += b.export_cap_w
            fixed["import"][:, n] -= b.import_cap_w

    flexible_pairs = [(s, b) for s, b in zip(sites, bounds, strict=True) if b.flexible]
    flexible_cols = [i for i, b in enumerate(bounds) if b.flexible]
    allocate = _default_allocate() if flexible_pairs else None

    limits: dict[Direction, np.ndarray] = {}
    reports: dict[Direction, ConstraintReport] = {}
    infeasible: list[EnvelopeInfeasibility] = []
    starts = tuple(datetime.fromtimestamp(int(e), tz=UTC) for e in epochs)
    aware = (
        _forecast_caps(flexible_pairs, series, forecast_margin_fraction)
        if forecast_margin_fraction is not None
        else {}
    )
    not_carried: list[tuple[Direction, datetime]] = []

    def by_rule(problem: AllocationProblem) -> AllocationResult:
        assert allocate is not None  # only called with flexible sites
        return allocate(problem, rule)

    raised: dict[Direction, int] = {}
    for direction in DIRECTIONS:
        flex = _flexible_sites(direction, flexible_pairs, topo.node_index, aware.get(direction))
        dp: DirectionProblem = build_direction_problem(network, direction, flex, fixed[direction])
        if allocate is None:
            result = _no_flexible_result(dp.problem)
        else:  # without minima (or all zero) this is the rule's own allocation, nothing more
            side = 0 if direction == "export" else 1
            least = minimum_w or {}
            floor = np.array([least.get(s.id, (0.0, 0.0))[side] for s, _ in flexible_pairs])
            outcome = allocate_with_minimum(dp.problem, by_rule, floor)
            result = outcome.result
            raised[direction] = outcome.raised
            not_carried.extend((direction, starts[t]) for t in outcome.not_carried)
        out = (
            np.column_stack([getattr(b, f"{direction}_cap_w") for b in bounds])
            if bounds
            else np.zeros((n_int, 0))
        )
        if flexible_cols:
            out[:, flexible_cols] = result.limit_w
        limits[direction] = out
        reports[direction] = ConstraintReport(
            direction=direction,
            names=dp.problem.constraint_names,
            kinds=dp.kinds,
            assets=dp.assets,
            limit=dp.limit,
            forecast=dp.forecast,
            value=dp.value(result),
            headroom=dp.problem.headroom,
            binding=np.asarray(result.binding, dtype=bool),
        )
        infeasible.extend(
            EnvelopeInfeasibility(direction, starts[i.interval], i.constraint, float(i.excess))
            for i in result.infeasible
        )

    forecast_export = (
        np.column_stack([series[s.id][1] - series[s.id][0] for s in sites]) if sites else np.zeros((n_int, 0))
    )
    return EnvelopeSet(
        site_ids=tuple(s.id for s in sites),
        flexible=np.array([b.flexible for b in bounds], dtype=bool),
        interval_starts=starts,
        interval_s=interval_s,
        policy=policy,
        export_limit_w=limits["export"],
        import_limit_w=limits["import"],
        forecast_export_w=forecast_export,
        constraints=reports,
        infeasibilities=tuple(infeasible),
        forecast_issued_at=issued_at,
        forecast_margin_fraction=forecast_margin_fraction,
        minimum_not_carried=tuple(not_carried),
        minimum_raised=raised,
    )


def next_interval_boundary(now: datetime, interval_s: int) -> datetime:
    """The first interval start at or after `now` (UTC), so a default run never starts in the past."""
    return datetime.fromtimestamp(math.ceil(now.timestamp() / interval_s) * interval_s, tz=UTC)
