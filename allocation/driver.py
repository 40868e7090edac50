"""Shared plumbing for every rule: bounds (with ramp), one core call, and the honest report.

A rule is a "core" `(headroom, lo, hi) -> limit_w` over any number of intervals. Without a
ramp limit the core sees the whole horizon at once (vectorised); with one, intervals are
chained and the core is called once per interval with ramp-tightened bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gridshare.allocation.network import Network, build_network, tolerance
from gridshare.allocation.problem import AllocationProblem, AllocationResult, Infeasibility
from gridshare.allocation.ramp import ramp_bounds

Core = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _as_float(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def solve(
    problem: AllocationProblem,
    make_core: Callable[[Network], Core],
    *,
    use_tree: bool = True,
) -> AllocationResult:
    """Run a rule over the horizon and report loading, binding rows and infeasibilities."""
    net = build_network(problem, use_tree=use_tree)
    core = make_core(net)
    headroom = _as_float(problem.headroom)
    floor_w, cap_w = _as_float(problem.floor_w), _as_float(problem.cap_w)
    if problem.max_step_w is None:
        lo, hi = floor_w, cap_w
        limit_w = core(headroom, lo, hi) if problem.n_intervals else np.zeros_like(floor_w)
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
