"""Static fallback limits for every dynamic site: safe with every dynamic site at its limit at once.

Method (docs/fallback.md): per direction, build the engine's own allocation problem
(`envelopes.headroom.build_direction_problem`: the same thermal rows and LinDistFlow voltage rows)
for one "interval" that is the stated worst case (`fallback.worst_case`), leave `margin_fraction`
of each constraint's worst-case headroom unused, and share the rest with the engine's allocation
rule. Static floors are honoured where the worst case can carry them and dropped where it cannot
(a fallback must be safe before it is generous). A constraint that fixed flows alone overload gives
every dynamic site behind it nothing. The result is checked against every row before it is returned;
a limit that fails the check is a bug and raises rather than being published.

Generation and load limits equal the export and import limits: the site's own load cannot be
counted on while generating (nor its generation while loading), which is the same worst case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import cast

import numpy as np

from gridshare.allocation.rules import Policy, allocate
from gridshare.envelopes.compute import POLICIES, _flexible_sites
from gridshare.envelopes.headroom import DIRECTIONS, Direction, build_direction_problem
from gridshare.fallback.explain import SetBy, setting_constraints
from gridshare.fallback.ramp import RampLimits, ramp_rates, site_rating_w
from gridshare.fallback.worst_case import WorstCase, background_injection_w
from gridshare.grid.agreements import AgreementBounds, IntervalTimes, agreement_bounds
from gridshare.grid.network import Network, NetworkError, Site, validate_sites

#: Slack allowed by the self-check, relative to a row's scale (rating, or the voltage band).
CHECK_RTOL = 1e-7
_ONE_INTERVAL = IntervalTimes(
    epoch_s=np.zeros(1, dtype=np.int64), month=np.ones(1, int), hour=np.zeros(1, int)
)


class FallbackError(RuntimeError):
    """The computed limits fail their own check: never publish them."""


@dataclass(frozen=True)
class FallbackLimit:
    """One dynamic site's DefaultDERControl values and why they are what they are."""

    site_id: str
    export_w: float
    import_w: float
    generation_w: float
    load_w: float
    set_grad_w_hundredths: int
    export_set_by: SetBy
    import_set_by: SetBy
    ramp_set_by: str | None  # node whose rapid-voltage-change limit sets the ramp (None: the 100 %/s cap)
    export_floor_kept: bool = True
    import_floor_kept: bool = True

    def explain(self) -> str:
        """One line an operator can read."""
        ramp = (
            f"voltage change at {self.ramp_set_by}" if self.ramp_set_by else "the 100 %/s cap (no impedance)"
        )
        dropped = [d for d in ("export", "import") if not getattr(self, f"{d}_floor_kept")]
        text = (
            f"{self.site_id}: export {self.export_w:.0f} W set by {self.export_set_by.describe()}; "
            f"import {self.import_w:.0f} W set by {self.import_set_by.describe()}; "
            f"setGradW {self.set_grad_w_hundredths / 100:g} %/s set by {ramp}"
        )
        if dropped:
            text += f"; {' and '.join(dropped)} floor not carried by the worst case"
        return text


@dataclass(frozen=True)
class WorstCaseCheck:
    """Every constraint of one direction in the worst case with dynamic sites at their fallback limits."""

    direction: Direction
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    limit: np.ndarray  # (m,) rating W or voltage bound pu
    fixed_value: np.ndarray  # (m,) flow W / voltage pu of everything not dynamic
    value: np.ndarray  # (m,) with every dynamic site at its fallback limit
    overloaded: np.ndarray  # (m,) bool: fixed flows alone exceed the rating


@dataclass(frozen=True)
class FallbackSet:
    limits: dict[str, FallbackLimit]  # by network site id, dynamic sites only
    checks: dict[Direction, WorstCaseCheck]
    worst_case: WorstCase
    policy: str
    margin_fraction: float


@dataclass(frozen=True)
class _Direction:
    limit_w: np.ndarray
    set_by: list[SetBy]
    floor_kept: np.ndarray
    check: WorstCaseCheck


def _allocate_direction(
    network: Network,
    sites: Sequence[Site],
    flexible: Sequence[tuple[Site, AgreementBounds]],
    direction: Direction,
    policy: Policy,
    worst: WorstCase,
    margin_fraction: float,
) -> _Direction:
    background = background_injection_w(network, sites, direction, worst)
    flex = _flexible_sites(direction, flexible, network.topology.node_index)  # the engine's weights
    if not flexible:  # the engine's helper sizes an empty set at zero intervals; the worst case is one
        flex = replace(flex, floor_w=np.zeros((1, 0)), cap_w=np.zeros((1, 0)))
    dp = build_direction_problem(network, direction, flex, background)
    problem = replace(dp.problem, max_step_w=None, initial_w=None)
    headroom = problem.headroom[0]
    usable = np.where(headroom > 0, headroom * (1.0 - margin_fraction), headroom)
    n_sites = problem.n_sites
    problem = replace(problem, headroom=usable[None, :])
    sens = problem.sensitivity
    floor, cap = problem.floor_w[0], problem.cap_w[0]
    over_rows = usable < 0  # fixed flows alone overload these rows
    pinned = np.zeros(n_sites, dtype=bool)  # behind a row that fixed flows and floors overload
    limit = np.zeros(n_sites)
    if n_sites:
        # Find the rows the worst case cannot carry with every floor honoured. Sites behind them are
        # counted at their floors everywhere else (as the engine holds them there), and share those
        # rows up to their floors only: a fallback is safe before it is generous.
        for _ in range(n_sites + 1):
            lo, hi = floor, np.where(pinned, floor, cap)
            result = allocate(replace(problem, floor_w=lo[None, :], cap_w=hi[None, :]), policy)
            limit = np.asarray(result.limit_w[0], dtype=float)
            for i in result.infeasible:
                over_rows[problem.constraint_names.index(i.constraint)] = True
            pin = (sens[over_rows] > 0).any(axis=0) & ~pinned
            if not pin.any():
                break
            pinned |= pin
        if pinned.any():
            lo, hi = np.where(pinned, 0.0, limit), np.where(pinned, floor, limit)
            result = allocate(replace(problem, floor_w=lo[None, :], cap_w=hi[None, :]), policy)
            limit = np.asarray(result.limit_w[0], dtype=float)
    starved = (sens[usable < 0] > 0).any(axis=0)
    limit = np.floor(np.where(starved, 0.0, np.clip(limit, 0.0, cap)))
    loading = sens @ limit
    _self_check(problem.constraint_names, usable, loading, dp.limit, dp.kinds)
    signs = np.array([-1.0 if k == "voltage" and direction == "import" else 1.0 for k in dp.kinds])
    fixed_value = dp.forecast[0]
    value = fixed_value + signs * loading
    set_by = setting_constraints(
        names=problem.constraint_names,
        kinds=dp.kinds,
        sensitivity=sens,
        usable=usable,
        loading=loading,
        rating=dp.limit,
        worst_value=value,
        limit_w=limit,
        cap_w=cap,
        overloaded=over_rows,
        direction=direction,
    )
    check = WorstCaseCheck(
        direction, problem.constraint_names, dp.kinds, dp.limit, fixed_value, value, usable < 0
    )
    return _Direction(limit, set_by, limit >= np.floor(floor), check)


def _self_check(
    names: tuple[str, ...], usable: np.ndarray, loading: np.ndarray, limit: np.ndarray, kinds: tuple[str, ...]
) -> None:
    """Every row carries the dynamic sites' worst case within the headroom it was given (or nothing)."""
    scale = np.where(np.array(kinds) == "thermal", np.abs(limit), 0.1)
    excess = loading - np.maximum(usable, 0.0)
    bad = np.flatnonzero(excess > CHECK_RTOL * scale + 1e-9)
    if bad.size:
        worst = ", ".join(f"{names[c]} by {excess[c]:.3g}" for c in bad[:5])
        raise FallbackError(f"fallback limits overload {worst} in the worst case")


def compute_fallback(
    network: Network,
    sites: Sequence[Site],
    *,
    policy: str = "pro-rata",
    worst_case: WorstCase = WorstCase(),
    margin_fraction: float = 0.0,
    rated_w: Mapping[str, float] | None = None,
    ramp_limits: RampLimits = RampLimits(),
) -> FallbackSet:
    """Fallback limits for every dynamic site of `sites` on `network` (derates already applied).

    `rated_w` may give a site's device rating (W) when it exceeds its agreed maxima, so the ramp
    rate, a percentage of the device's rating, is not underestimated. Raises NetworkError for
    invalid input and FallbackError if the result fails its own check.
    """
    if policy not in POLICIES:
        raise NetworkError(f"unknown policy {policy!r} (choose from {', '.join(POLICIES)})", "policy")
    rule = cast(Policy, policy)  # one of POLICIES, just checked (the same names as allocation.rules')
    if not 0.0 <= margin_fraction < 1.0:
        raise NetworkError(f"must be in [0, 1), got {margin_fraction}", "margin_fraction")
    topo = network.topology  # validates the network
    validate_sites(network, sites)
    flexible = [
        (s, agreement_bounds(s.agreement, _ONE_INTERVAL, s.max_export_w, s.max_import_w))
        for s in sites
        if s.agreement.flexible
    ]
    per_direction = {
        d: _allocate_direction(network, sites, flexible, d, rule, worst_case, margin_fraction)
        for d in DIRECTIONS
    }
    rated = np.array([site_rating_w(s, rated_w) for s, _ in flexible])
    nodes = np.array([topo.node_index[s.node] for s, _ in flexible], dtype=int)
    ramp = ramp_rates(network, nodes, rated, ramp_limits, tuple(s.id for s, _ in flexible))
    limits: dict[str, FallbackLimit] = {}
    exp, imp = per_direction["export"], per_direction["import"]
    for j, (site, _) in enumerate(flexible):
        limits[site.id] = FallbackLimit(
            site_id=site.id,
            export_w=float(exp.limit_w[j]),
            import_w=float(imp.limit_w[j]),
            generation_w=float(exp.limit_w[j]),
            load_w=float(imp.limit_w[j]),
            set_grad_w_hundredths=int(ramp.set_grad_w_hundredths[j]),
            export_set_by=exp.set_by[j],
            import_set_by=imp.set_by[j],
            ramp_set_by=ramp.set_by_node[j],
            export_floor_kept=bool(exp.floor_kept[j]),
            import_floor_kept=bool(imp.floor_kept[j]),
        )
    return FallbackSet(
        limits=limits,
        checks={d: per_direction[d].check for d in DIRECTIONS},
        worst_case=worst_case,
        policy=policy,
        margin_fraction=margin_fraction,
    )
