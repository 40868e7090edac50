"""Shared plumbing for every rule: bounds (with ramp), one core call, and the honest report.

A rule is a "core" `(headroom, lo, hi) -> limit_w` over any number of intervals. Without a
ramp limit the core sees the whole horizon at once (vectorised); with one, intervals are
chained and the core is called once per interval with ramp-tightened bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from gridshare.allocation.network import Network, build_network, tolerance
from gridshare.allocation.problem import AllocationProblem, AllocationResult, Infeasibility
from gridshare.allocation.ramp import ramp_bounds
from gridshare.allocation.redundant import redundant_rows

Core = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _as_float(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def solve(
    problem: AllocationProblem,
    make_core: Callable[[Network], Core],
    *,
    use_tree: bool = True,
    prune: bool = False,
) -> AllocationResult:
    """Run a rule over the horizon and report loading, binding rows and infeasibilities.

    `prune` lets the core skip rows another row covers all horizon long (`redundant.py`): only for
    rules whose answer depends on the feasible set alone (pro-rata, LIFO), never on which rows exist.
    The report is always over every row.
    """
    net = build_network(problem, use_tree=use_tree)
    core_problem = _without_covered_rows(problem) if prune else problem
    core_net = net if core_problem is problem else build_network(core_problem, use_tree=use_tree)
    core = make_core(core_net)
    headroom = _as_float(core_problem.headroom)
    floor_w, cap_w = _as_float(problem.floor_w), _as_float(problem.cap_w)
    if problem.max_step_w is None:
        lo, hi = floor_w, cap_w
        limit_w = _shared(core_net, core, headroom, lo, hi)
    else:
        step_w = _as_float(problem.max_step_w)
        previous = None if problem.initial_w is None else _as_float(problem.initial_w)
        lo = np.empty_like(floor_w)
        limit_w = np.empty_like(floor_w)
        for t in range(problem.n_intervals):
            lo_t, hi_t = ramp_bounds(floor_w[t], cap_w[t], previous, step_w)
            lo[t] = lo_t
            limit_w[t] = core(headroom[t : t + 1], lo_t[None, :], hi_t[None, :])[0]
            previous = limit_w[t]
    return report(problem, net, limit_w, lo)


def _without_covered_rows(problem: AllocationProblem) -> AllocationProblem:
    """The problem without rows another row covers all horizon long, or itself if there are none."""
    if problem.n_constraints < 2 or not problem.n_intervals:
        return problem
    keep = ~redundant_rows(problem.sensitivity, problem.headroom)
    if keep.all():
        return problem
    return replace(
        problem,
        constraint_names=tuple(n for n, k in zip(problem.constraint_names, keep, strict=True) if k),
        sensitivity=np.asarray(problem.sensitivity)[keep],
        headroom=np.asarray(problem.headroom)[:, keep],
        tranche_size_w=None if problem.tranche_size_w is None else np.asarray(problem.tranche_size_w)[keep],
    )


def _shared(net: Network, core: Core, headroom: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Run the core only on intervals with something to share.

    Where no site has room between its bounds the answer is lo, and where every site at its cap
    fits every constraint the answer is hi, under every rule (each gives a site its cap when
    nothing binds). A year-long study has many such intervals (night, calm, light flows), and the
    core's cost grows with the intervals it sees; the others cost one matrix product.
    """
    if not lo.shape[0]:
        return np.zeros_like(lo)
    room = np.any(hi > lo, axis=1)
    fits = np.all(net.load(hi) <= headroom, axis=1)
    active = room & ~fits
    limit_w = np.where(fits[:, None], hi, lo)
    if active.all():
        return core(headroom, lo, hi)
    if active.any():
        limit_w[active] = core(headroom[active], lo[active], hi[active])
    return limit_w


def report(problem: AllocationProblem, net: Network, limit_w: np.ndarray, lo: np.ndarray) -> AllocationResult:
    """Loading and binding per row, plus every (interval, row) that the lower bounds overload."""
    headroom = _as_float(problem.headroom)
    tol = tolerance(net, headroom, problem.cap_w)
    loading = net.load(limit_w)
    binding = loading >= headroom - tol
    excess = net.load(lo) - headroom
    over_t, over_i = np.nonzero(excess > tol)
    infeasible = [
        Infeasibility(interval=int(t), constraint=problem.constraint_names[i], excess=float(excess[t, i]))
        for t, i in zip(over_t, over_i, strict=True)
    ]
    return AllocationResult(limit_w=limit_w, loading=loading, binding=binding, infeasible=infeasible)
