"""Worked examples for the allocation rules, with expected numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gridshare.allocation import POLICIES, AllocationProblem, Infeasibility, allocate

PER_UNIT = 1e-8  # a voltage row's dV/dP, per-unit per watt


def problem(
    rows: dict[str, list[float]],
    headroom: list[float] | list[list[float]],
    *,
    cap_w: list[float],
    floor_w: list[float] | None = None,
    weight: list[float] | None = None,
    queue: list[int] | None = None,
    **extra: object,
) -> AllocationProblem:
    """A small problem: one sensitivity list per named constraint, one entry per site."""
    n_sites = len(cap_w)
    headroom_arr = np.atleast_2d(np.asarray(headroom, dtype=float))
    n_intervals = headroom_arr.shape[0]
    floors = np.zeros(n_sites) if floor_w is None else np.asarray(floor_w, dtype=float)
    return AllocationProblem(
        site_ids=tuple(f"s{j}" for j in range(n_sites)),
        constraint_names=tuple(rows),
        sensitivity=np.array(list(rows.values()), dtype=float),
        headroom=headroom_arr,
        floor_w=np.tile(floors, (n_intervals, 1)),
        cap_w=np.tile(np.asarray(cap_w, dtype=float), (n_intervals, 1)),
        weight=np.asarray(cap_w if weight is None else weight, dtype=float),
        queue_position=np.arange(n_sites) if queue is None else np.asarray(queue),
        **extra,  # type: ignore[arg-type]
    )


def test_single_constraint_is_shared_in_proportion_to_weight() -> None:
    # Three sites with agreed capacities 2, 3 and 5 kW behind a transformer with 5 kW headroom.
    p = problem({"tx": [1, 1, 1]}, [5000.0], cap_w=[2000, 3000, 5000])
    limits = allocate(p, "pro-rata").limit_w[0]
    share = 5000 / (2000 + 3000 + 5000)  # everyone gets the same fraction of their capacity
    np.testing.assert_allclose(limits, [2000 * share, 3000 * share, 5000 * share])


def test_floors_come_first_and_the_rest_is_shared_by_weight() -> None:
    # Site 0 has a 500 W guaranteed floor; the remaining 4500 W rises with weight.
    p = problem({"tx": [1, 1, 1]}, [5000.0], cap_w=[2000, 3000, 5000], floor_w=[500, 0, 0])
    limits = allocate(p, "pro-rata").limit_w[0]
    level = (5000 - 500) / (2000 + 3000 + 5000)
    np.testing.assert_allclose(limits, [500 + 2000 * level, 3000 * level, 5000 * level])


def test_capped_site_passes_its_share_on_through_nested_constraints() -> None:
    # Zone 9 kW over a transformer (sites 0, 1; 3 kW) and site 2; equal weights.
    # Site 0 may only export 500 W, so site 1 takes the transformer's other 2.5 kW, and the
    # zone's remaining 6 kW goes to site 2 rather than an "equal third" of 3 kW.
    p = problem(
        {"zone": [1, 1, 1], "tx": [1, 1, 0]},
        [9000.0, 3000.0],
        cap_w=[500, 10_000, 10_000],
        weight=[1000, 1000, 1000],
    )
    result = allocate(p, "pro-rata")
    np.testing.assert_allclose(result.limit_w[0], [500, 2500, 6000])
    assert result.binding[0].tolist() == [True, True]
    assert result.infeasible == []


def test_pro_rata_is_not_the_minimum_of_independent_shares() -> None:
    # Zone 9 kW: independent thirds would give everyone 3 kW; the transformer (2 kW for sites
    # 0 and 1) holds them at 1 kW each, and site 2 gets the 7 kW they cannot use.
    p = problem(
        {"zone": [1, 1, 1], "tx": [1, 1, 0]},
        [9000.0, 2000.0],
        cap_w=[10_000] * 3,
        weight=[1] * 3,
    )
    np.testing.assert_allclose(allocate(p, "pro-rata").limit_w[0], [1000, 1000, 7000])


def test_lifo_curtails_the_later_site_first() -> None:
    p = problem({"tx": [1, 1]}, [[7000.0], [4000.0]], cap_w=[5000, 5000], queue=[0, 1])
    limits = allocate(p, "lifo").limit_w
    np.testing.assert_allclose(limits[0], [5000, 2000])  # the later site absorbs the 3 kW
    np.testing.assert_allclose(limits[1], [4000, 0])  # ... and is at its floor before site 0 loses


def test_lifo_respects_the_later_sites_floor_and_queue_not_index_order() -> None:
    # Site 1 connected first (queue 0); site 0 later but with a 1 kW floor.
    p = problem({"tx": [1, 1]}, [4000.0], cap_w=[5000, 5000], floor_w=[1000, 0], queue=[1, 0])
    np.testing.assert_allclose(allocate(p, "lifo").limit_w[0], [1000, 3000])


def _daily_curtailment(policy: str, headroom_w: float) -> np.ndarray:
    """Two 5 MW solar sites behind one constraint over a day: fraction of energy curtailed."""
    hours = np.arange(288) / 12
    available_w = 5e6 * np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    cap_w = np.stack([available_w, available_w], axis=1)
    p = AllocationProblem(
        site_ids=("first", "second"),
        constraint_names=("substation",),
        sensitivity=np.ones((1, 2)),
        headroom=np.full((288, 1), headroom_w),
        floor_w=np.zeros((288, 2)),
        cap_w=cap_w,
        weight=np.array([5e6, 5e6]),
        queue_position=np.array([0, 1]),
    )
    limits = allocate(p, policy).limit_w  # type: ignore[arg-type]
    return (cap_w - limits).sum(axis=0) / cap_w.sum(axis=0)


def test_ameren_two_solar_sites_lifo_versus_pro_rata() -> None:
    # Ameren report: two 5 MW solar sites that each lose 5 % of their energy under pro-rata
    # lose 0-5 % (first) and 5-10 % (second) under LIFO. Find the headroom giving exactly 5 %
    # under pro-rata from the closed form (equal sites share equally), then compare.
    hours = np.arange(288) / 12
    available_w = 5e6 * np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)

    def prorata_share(headroom_w: float) -> float:
        return float(np.maximum(available_w - headroom_w / 2, 0).sum() / available_w.sum())

    low, high = 0.0, 10e6
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if prorata_share(mid) > 0.05 else (low, mid)
    headroom_w = (low + high) / 2

    prorata = _daily_curtailment("pro-rata", headroom_w)
    lifo = _daily_curtailment("lifo", headroom_w)
    np.testing.assert_allclose(prorata, [0.05, 0.05], atol=1e-6)
    assert 0.0 <= lifo[0] <= 0.05 + 1e-9
    assert 0.05 - 1e-9 <= lifo[1] <= 0.10 + 1e-9
    assert lifo[1] > lifo[0]
    # the network takes the same energy either way: only who is curtailed changes
    assert lifo.sum() == pytest.approx(prorata.sum(), rel=1e-9)


def test_tranche_admits_the_first_two_sites_then_serves_the_rest_lifo() -> None:
    # Four 2 kW sites; the tranche (4 kW of agreed capacity) admits the first two in queue
    # order, which here are sites 2 and 0. Queue: site 2, site 0, site 3, site 1.
    queue = [1, 3, 0, 2]
    kwargs = {"cap_w": [2000] * 4, "queue": queue, "tranche_size_w": np.array([4000.0])}
    tight = problem({"tx": [1, 1, 1, 1]}, [3000.0], **kwargs)  # type: ignore[arg-type]
    np.testing.assert_allclose(allocate(tight, "tranche").limit_w[0], [1500, 0, 1500, 0])
    # Plenty for the tranche: the later connectors queue behind it, earliest (site 3) first.
    loose = problem({"tx": [1, 1, 1, 1]}, [7000.0], **kwargs)  # type: ignore[arg-type]
    np.testing.assert_allclose(allocate(loose, "tranche").limit_w[0], [2000, 1000, 2000, 2000])
    # Under pure pro-rata everyone would have had 1750 W.
    np.testing.assert_allclose(allocate(loose, "pro-rata").limit_w[0], [1750] * 4)


def test_voltage_row_shares_by_weight_and_max_total_prefers_the_cheap_site() -> None:
    # One feeder voltage row: site 1 raises voltage twice as much per watt as site 0.
    p = problem({"volt": [PER_UNIT, 2 * PER_UNIT]}, [0.03], cap_w=[2e6, 2e6], weight=[1, 1])
    # pro-rata: both rise together, 1e-8*x + 2e-8*x = 0.03 -> x = 1 MW each
    np.testing.assert_allclose(allocate(p, "pro-rata").limit_w[0], [1e6, 1e6], rtol=1e-9)
    # max-total: fill the cheaper site to its 2 MW cap, the rest of the row goes to site 1
    np.testing.assert_allclose(
        allocate(p, "max-total").limit_w[0], [2e6, (0.03 - 2e6 * PER_UNIT) / (2 * PER_UNIT)], rtol=1e-6
    )


def test_floors_that_overload_a_constraint_are_reported_not_hidden() -> None:
    # Transformer headroom 5 kW, but two sites have guaranteed 3 kW floors each.
    p = problem(
        {"zone": [1, 1, 1], "tx": [1, 1, 0]},
        [[20_000.0, 5000.0], [20_000.0, 8000.0]],
        cap_w=[6000, 6000, 6000],
        floor_w=[3000, 3000, 0],
    )
    for policy in POLICIES:
        result = allocate(p, policy)
        assert result.infeasible == [Infeasibility(interval=0, constraint="tx", excess=1000.0)], policy
        np.testing.assert_allclose(result.limit_w[0, :2], [3000, 3000], err_msg=policy)  # as low as allowed
        assert result.limit_w[0, 2] == pytest.approx(6000), policy  # the healthy site is untouched
        assert result.loading[1, 1] <= 8000 + 1e-6, policy  # the next interval is fine again


def test_ramp_limits_steps_and_a_ramp_down_that_overloads_is_reported() -> None:
    # Headroom jumps from 2 kW to 10 kW and back; the site may move 1 kW per interval.
    headroom = [[2000.0], [10_000.0], [10_000.0], [10_000.0], [2000.0]]
    p = problem(
        {"tx": [1]},
        headroom,
        cap_w=[10_000],
        max_step_w=np.array([1000.0]),
        initial_w=np.array([2000.0]),
    )
    for policy in POLICIES:
        result = allocate(p, policy)
        np.testing.assert_allclose(result.limit_w[:, 0], [2000, 3000, 4000, 5000, 4000], err_msg=policy)
        # stepping down to 2 kW in one go would break the ramp: the overload is reported
        assert result.infeasible == [Infeasibility(interval=4, constraint="tx", excess=2000.0)], policy


def test_unknown_policy_and_malformed_problems_raise() -> None:
    p = problem({"tx": [1, 1]}, [1000.0], cap_w=[1000, 1000])
    with pytest.raises(ValueError, match="unknown allocation policy"):
        allocate(p, "first-come")  # type: ignore[arg-type]
    bad = problem({"tx": [1, 1]}, [1000.0], cap_w=[1000, 1000], floor_w=[2000, 0])
    with pytest.raises(ValueError, match="floor_w <= cap_w"):
        allocate(bad, "pro-rata")
