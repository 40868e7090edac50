"""Property tests over random radial networks (and some non-radial ones with voltage rows).

Each property is something a site owner or network operator would notice: a limit above a
constraint, a broken floor, capacity left on the table under pro-rata, a later connector
ahead of an earlier one under LIFO, an envelope that shrinks when its own transformer gains
headroom, or a step bigger than the agreed ramp.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridshare.allocation import AllocationProblem, AllocationResult, allocate
from gridshare.allocation.lifo import allocate_lifo
from gridshare.allocation.prorata import allocate_prorata
from gridshare.allocation.tranche import allocate_tranche
from tests.support.allocation_cases import FAST, meshed, radial

SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RULES_WITHOUT_LP = ("pro-rata", "tranche", "lifo")


def row_tol(p: AllocationProblem) -> np.ndarray:
    """Slack the tests allow per (interval, row): rounding on sums of watts, nothing more."""
    return 1e-6 * (1.0 + np.abs(p.headroom) + p.cap_w @ p.sensitivity.T)


def watt_tol(p: AllocationProblem) -> float:
    return 1e-6 * (1.0 + float(p.cap_w.max(initial=0.0)))


def overloaded_by_floors(p: AllocationProblem) -> np.ndarray:
    return p.floor_w @ p.sensitivity.T > p.headroom + row_tol(p)


def binding(p: AllocationProblem, result: AllocationResult) -> np.ndarray:
    return result.loading >= p.headroom - row_tol(p)


def check_feasible(p: AllocationProblem, result: AllocationResult) -> None:
    """Floors and caps always hold; rows hold unless the floors alone overload them (reported)."""
    limit = result.limit_w
    tol = watt_tol(p)
    assert np.all(limit >= p.floor_w - tol), "limit below floor"
    assert np.all(limit <= p.cap_w + tol), "limit above cap"
    np.testing.assert_allclose(result.loading, limit @ p.sensitivity.T, rtol=1e-9, atol=1e-6)
    reported = np.zeros_like(p.headroom, dtype=bool)
    for item in result.infeasible:
        reported[item.interval, p.constraint_names.index(item.constraint)] = True
    overloaded = result.loading > p.headroom + row_tol(p)
    assert not np.any(overloaded & ~reported), "constraint exceeded without an Infeasibility"
    # reported rows are exactly those the floors overload (give or take the tolerances)
    assert np.all(reported | ~overloaded_by_floors(p)), "floors overload a row but nothing was reported"
    floor_load = p.floor_w @ p.sensitivity.T
    assert np.all(floor_load[reported] > (p.headroom - row_tol(p))[reported]), "spurious Infeasibility"
    for item in result.infeasible:
        i = p.constraint_names.index(item.constraint)
        excess = floor_load[item.interval, i] - p.headroom[item.interval, i]
        assert abs(item.excess - excess) <= row_tol(p)[item.interval, i]
    for item in result.infeasible:
        i = p.constraint_names.index(item.constraint)
        sites = p.sensitivity[i] > 0
        assert np.all(limit[item.interval, sites] <= p.floor_w[item.interval, sites] + tol), (
            "not as low as allowed"
        )


def check_pareto(p: AllocationProblem, result: AllocationResult) -> None:
    """Pro-rata leaves nothing on the table: a site below its cap sits in a binding row."""
    below_cap = result.limit_w < p.cap_w - watt_tol(p)
    covered = binding(p, result).astype(float) @ (p.sensitivity > 0)
    assert not np.any(below_cap & (covered == 0)), "a site could rise without breaking anything"


def check_fair(p: AllocationProblem, result: AllocationResult) -> None:
    """Weighted max-min fairness: a site below cap is in a binding row where no site rose further.

    "Rose" is measured in weight units, (limit - floor) / weight: the water level.
    """
    level = (result.limit_w - p.floor_w) / p.weight
    scale = 1e-6 * (1.0 + np.abs(level).max())
    bind = binding(p, result)
    for t in range(p.n_intervals):
        for j in np.flatnonzero(result.limit_w[t] < p.cap_w[t] - watt_tol(p)):
            rows = np.flatnonzero(bind[t] & (p.sensitivity[:, j] > 0))
            highest = [level[t, p.sensitivity[i] > 0].max() for i in rows]
            assert any(level[t, j] >= h - scale for h in highest), f"site {j} is not a bottleneck winner"


def check_lifo(p: AllocationProblem, result: AllocationResult) -> None:
    """A later site above its floor at a row means every earlier site there is at its cap or
    held by a binding row of its own (one the later site does not load)."""
    tol = watt_tol(p)
    order = np.lexsort((np.arange(p.n_sites), p.queue_position))
    rank = np.argsort(order)
    bind = binding(p, result)
    loads = p.sensitivity > 0
    for t in range(p.n_intervals):
        limit = result.limit_w[t]
        for i in range(p.n_constraints):
            sites = np.flatnonzero(loads[i])
            for late in sites[limit[sites] > p.floor_w[t, sites] + tol]:
                for early in sites[(rank[sites] < rank[late]) & (limit[sites] < p.cap_w[t, sites] - tol)]:
                    own = bind[t] & loads[:, early] & ~loads[:, late]
                    assert own.any(), f"site {late} (later) kept watts that site {early} (earlier) wanted"


@FAST
@given(radial())
def test_every_rule_is_feasible_on_radial_networks(p: AllocationProblem) -> None:
    for policy in RULES_WITHOUT_LP:
        check_feasible(p, allocate(p, policy))


@SLOW
@given(radial())
def test_max_total_is_feasible_and_beats_every_rule(p: AllocationProblem) -> None:
    best = allocate(p, "max-total")
    check_feasible(p, best)
    best_total = best.limit_w.sum(axis=1)
    slack = 1e-6 * (1.0 + p.cap_w.sum(axis=1))
    for policy in RULES_WITHOUT_LP:
        assert np.all(allocate(p, policy).limit_w.sum(axis=1) <= best_total + slack), policy
    # on a radial network serving sites in any order already reaches the maximum (a
    # polymatroid), so LIFO must match the LP: a cross-check of both
    np.testing.assert_allclose(allocate(p, "lifo").limit_w.sum(axis=1), best_total, atol=slack.max())


@FAST
@given(radial())
def test_pro_rata_is_pareto_efficient_and_max_min_fair(p: AllocationProblem) -> None:
    result = allocate(p, "pro-rata")
    check_pareto(p, result)
    check_fair(p, result)


@FAST
@given(radial())
def test_lifo_serves_earlier_connectors_first(p: AllocationProblem) -> None:
    result = allocate(p, "lifo")
    check_pareto(p, result)
    check_lifo(p, result)


@FAST
@given(radial(), st.data())
def test_more_headroom_never_shrinks_an_envelope_under_that_constraint(
    p: AllocationProblem, data: st.DataObject
) -> None:
    # Raising one row's headroom lowers no site that loads it; raising the root's (row 0,
    # which every other row sits under) lowers nobody. (Sites on a sibling branch may
    # lose: see test_sibling_can_lose_when_a_neighbour_transformer_gains.)
    row = data.draw(st.integers(0, p.n_constraints - 1))
    extra = data.draw(st.sampled_from([100.0, 1000.0, 1e5]))
    bigger = p.headroom.copy()
    bigger[:, row] += extra
    q = replace(p, headroom=bigger)
    tol = watt_tol(p)
    under = p.sensitivity[row] > 0
    for policy in ("pro-rata", "lifo"):
        before, after = allocate(p, policy).limit_w, allocate(q, policy).limit_w
        lowered = after < before - tol
        assert not np.any(lowered[:, under]), policy
        if row == 0:
            assert not np.any(lowered), policy


def test_sibling_can_lose_when_a_neighbour_transformer_gains() -> None:
    # Feeder 10 kW over transformer A (site 0, 2 kW headroom) and site 1. Raising A to 6 kW
    # lets site 0 rise, and the feeder then has less for site 1 under either rule. This is
    # the price of sharing a feeder, and why monotonicity is promised only under the row.
    def limits(tx_w: float, policy: str) -> np.ndarray:
        p = AllocationProblem(
            site_ids=("a", "b"),
            constraint_names=("feeder", "tx"),
            sensitivity=np.array([[1.0, 1.0], [1.0, 0.0]]),
            headroom=np.array([[10_000.0, tx_w]]),
            floor_w=np.zeros((1, 2)),
            cap_w=np.full((1, 2), 10_000.0),
            weight=np.ones(2),
            queue_position=np.array([0, 1]),
        )
        return allocate(p, policy).limit_w[0]  # type: ignore[arg-type]

    for policy in ("pro-rata", "lifo"):
        assert limits(6000, policy)[0] > limits(2000, policy)[0]
        assert limits(6000, policy)[1] < limits(2000, policy)[1]


@FAST
@given(radial())
def test_tranche_members_are_never_held_back_by_later_connectors(p: AllocationProblem) -> None:
    result = allocate(p, "tranche")
    check_feasible(p, result)
    check_pareto(p, result)
    if p.tranche_size_w is None:
        np.testing.assert_allclose(result.limit_w, allocate(p, "pro-rata").limit_w, atol=watt_tol(p))
        return
    # membership per the rule: in queue order, cumulative weight within the row's tranche
    loads = p.sensitivity > 0
    order = np.lexsort((np.arange(p.n_sites), p.queue_position))
    later = np.zeros(p.n_sites, dtype=bool)
    for i in range(p.n_constraints):
        queue = order[loads[i, order]]
        later[queue[np.cumsum(p.weight[queue]) > p.tranche_size_w[i] * (1 + 1e-12)]] = True
    tol = watt_tol(p)
    bind = binding(p, result)
    for t in range(p.n_intervals):
        limit = result.limit_w[t]
        for j in np.flatnonzero(~later & (limit < p.cap_w[t] - tol)):
            # a held-back member shares a full row only with later connectors at their floors
            rows = np.flatnonzero(bind[t] & loads[:, j])
            assert any(
                np.all(limit[loads[i] & later] <= p.floor_w[t, loads[i] & later] + tol) for i in rows
            ), f"tranche member {j} gave way to a later connector"


@FAST
@given(radial())
def test_tree_fast_path_agrees_with_the_general_algorithms(p: AllocationProblem) -> None:
    tol = watt_tol(p)
    for rule in (allocate_prorata, allocate_lifo, allocate_tranche):
        fast, general = rule(p), rule(p, use_tree=False)
        np.testing.assert_allclose(fast.limit_w, general.limit_w, atol=tol, err_msg=rule.__name__)
        assert fast.infeasible == general.infeasible


@FAST
@given(meshed())
def test_rules_hold_their_properties_with_voltage_rows(p: AllocationProblem) -> None:
    prorata = allocate(p, "pro-rata")
    check_feasible(p, prorata)
    check_pareto(p, prorata)
    check_fair(p, prorata)
    lifo = allocate(p, "lifo")
    check_feasible(p, lifo)
    check_lifo(p, lifo)
    check_feasible(p, allocate(p, "tranche"))


@SLOW
@given(meshed())
def test_max_total_beats_every_rule_with_voltage_rows(p: AllocationProblem) -> None:
    best = allocate(p, "max-total")
    check_feasible(p, best)
    slack = 1e-6 * (1.0 + p.cap_w.sum(axis=1))
    for policy in RULES_WITHOUT_LP:
        assert np.all(allocate(p, policy).limit_w.sum(axis=1) <= best.limit_w.sum(axis=1) + slack), policy


@SLOW
@given(radial(ramp=True, max_intervals=6))
def test_ramp_limits_every_step(p: AllocationProblem) -> None:
    assert p.max_step_w is not None and p.initial_w is not None
    tol = watt_tol(p)
    for policy in (*RULES_WITHOUT_LP, "max-total"):
        result = allocate(p, policy)
        path = np.vstack([p.initial_w, result.limit_w])
        assert np.all(np.abs(np.diff(path, axis=0)) <= p.max_step_w + tol), policy
        assert np.all(result.limit_w >= p.floor_w - tol) and np.all(result.limit_w <= p.cap_w + tol), policy
        # rows hold unless the ramp-tightened floors overload them, and then it is reported
        reported = {(item.interval, item.constraint) for item in result.infeasible}
        over = np.argwhere(result.loading > p.headroom + row_tol(p))
        assert all((int(t), p.constraint_names[i]) in reported for t, i in over), policy
