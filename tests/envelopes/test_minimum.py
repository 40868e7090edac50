"""A guaranteed minimum (a site's fallback) moves only the limits below it, and only where it fits."""

from __future__ import annotations

import numpy as np

from gridshare.allocation.problem import AllocationProblem
from gridshare.allocation.rules import allocate
from gridshare.envelopes.minimum import allocate_with_minimum


def _two_sites_one_transformer(headroom_w: list[float]) -> AllocationProblem:
    n = len(headroom_w)
    return AllocationProblem(
        site_ids=("a", "b"),
        constraint_names=("thermal:tx",),
        sensitivity=np.ones((1, 2)),
        headroom=np.array(headroom_w, dtype=float)[:, None],
        floor_w=np.zeros((n, 2)),
        cap_w=np.full((n, 2), 10.0),
        weight=np.ones(2),
        queue_position=np.arange(2),
    )


def _pro_rata(problem: AllocationProblem):  # type: ignore[no-untyped-def]
    return allocate(problem, "pro-rata")


def test_only_limits_below_the_minimum_move_and_the_others_take_what_is_left() -> None:
    # 10 W shared equally: 5 each, above a's minimum of 4. 6 W: 3 each, so a is raised to 4 and b
    # keeps the 2 left. 3 W cannot carry a's 4: the rule's 1.5 each stands, and the interval is named.
    problem = _two_sites_one_transformer([10.0, 6.0, 3.0])
    outcome = allocate_with_minimum(problem, _pro_rata, np.array([4.0, 0.0]))
    assert np.allclose(outcome.result.limit_w, [[5.0, 5.0], [4.0, 2.0], [1.5, 1.5]])
    assert outcome.not_carried == (2,)
    assert outcome.raised == 1
    assert np.allclose(outcome.result.loading[:, 0], [10.0, 6.0, 3.0])


def test_a_minimum_everyone_already_gets_changes_nothing() -> None:
    problem = _two_sites_one_transformer([10.0, 8.0])
    plain = _pro_rata(problem)
    outcome = allocate_with_minimum(problem, _pro_rata, np.array([4.0, 4.0]))
    assert outcome.result is not None and np.array_equal(outcome.result.limit_w, plain.limit_w)
    assert (outcome.raised, outcome.not_carried) == (0, ())


def test_a_forecast_cap_below_the_minimum_is_lifted_to_it() -> None:
    problem = _two_sites_one_transformer([10.0])
    capped = AllocationProblem(**{**problem.__dict__, "cap_w": np.array([[1.0, 10.0]])})
    outcome = allocate_with_minimum(capped, _pro_rata, np.array([3.0, 0.0]))
    assert np.allclose(outcome.result.limit_w, [[3.0, 7.0]])
