"""Allocation that never gives a site less than a guaranteed minimum (its fallback limit).

Why: a device that loses contact drops to its DefaultDERControl, while its neighbours keep polling
their envelopes. Those envelopes were shared on the assumption that this device sits at *its*
envelope. If its envelope is below its default, the two together can exceed the constraint they
share. Pro-rata, tranche and LIFO are not monotone in the background: a milder interval can shift a
shared limit from one site to another (a neighbour freed from its own thermal limit takes more of a
shared voltage limit), so "the fallback is safe in the worst case" does not make it at most the
envelope in every interval. Here the engine makes it so.

Method: allocate as usual; where a site's limit falls below its minimum, hold it at the minimum in
those intervals (floor and cap: a forecast cap below it is lifted) and allocate again, until no site
is below. Every other site gets the rule's share of what is left. Where nothing falls below
(nearly always), the result is the rule's own, untouched. An interval whose constraints cannot carry
the raised floors (a forecast worse than the fallback's stated worst case) keeps the rule's
allocation and is reported: there the fallback itself is not safe, and the operator must know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from gridshare.allocation.problem import AllocationProblem, AllocationResult

#: Shortfall below the minimum ignored as rounding, relative to the minimum (and at least 1 mW).
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class MinimumOutcome:
    result: AllocationResult
    raised: int  # (interval, site) pairs whose floor was raised to the minimum
    not_carried: tuple[int, ...]  # intervals that cannot carry every minimum: the rule's allocation kept


def allocate_with_minimum(
    problem: AllocationProblem,
    allocate: Callable[[AllocationProblem], AllocationResult],
    minimum_w: np.ndarray,
) -> MinimumOutcome:
    """`allocate(problem)`, with no site's limit below `minimum_w` (n_sites,) where the interval allows."""
    first = allocate(problem)
    minimum = np.asarray(minimum_w, dtype=float)
    if minimum.shape != (problem.n_sites,):
        raise ValueError(f"minimum_w has shape {minimum.shape}, expected ({problem.n_sites},)")
    if problem.n_sites == 0 or not (minimum > 0).any():
        return MinimumOutcome(first, 0, ())
    slack = np.maximum(minimum * _TOLERANCE, 1e-3)
    raised = np.zeros(first.limit_w.shape, dtype=bool)
    result = first
    for _ in range(problem.n_sites + 1):
        below = (result.limit_w < minimum - slack) & ~raised
        if not below.any():
            break
        raised |= below
        # Held at exactly its minimum (the rule wanted it lower): the least change, and every other
        # site shares what is left by the rule, rather than the raised one also rising with them.
        pinned_w = np.broadcast_to(np.maximum(problem.floor_w, minimum), problem.floor_w.shape)
        floor_w = np.where(raised, pinned_w, problem.floor_w)
        cap_w = np.where(raised, pinned_w, problem.cap_w)
        result = allocate(replace(problem, floor_w=floor_w, cap_w=cap_w))
    if result is first:
        return MinimumOutcome(first, 0, ())
    before = {i.interval for i in first.infeasible}
    not_carried = sorted({i.interval for i in result.infeasible} - before)
    if not not_carried:
        return MinimumOutcome(result, int(raised.sum()), ())
    keep = np.zeros(problem.n_intervals, dtype=bool)
    keep[not_carried] = True
    merged = AllocationResult(
        limit_w=np.where(keep[:, None], first.limit_w, result.limit_w),
        loading=np.where(keep[:, None], first.loading, result.loading),
        binding=np.where(keep[:, None], first.binding, result.binding),
        infeasible=[i for i in result.infeasible if not keep[i.interval]]
        + [i for i in first.infeasible if keep[i.interval]],
    )
    return MinimumOutcome(merged, int(raised[~keep].sum()), tuple(not_carried))
