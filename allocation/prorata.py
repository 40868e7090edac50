"""Pure pro-rata: weighted progressive filling ("water-filling") across nested constraints.

Every site starts at its floor and all sites rise together, site j at rate weight_j
(limit_j = lo_j + weight_j * lam), until a constraint binds; its sites freeze and the rest
keep rising. Capacity a site cannot use (its cap, or a tighter constraint of its own) is
thereby passed on to the others, and the result is Pareto-efficient: the Ameren report's
"curtailed proportionally to size and to contribution to the constraint", made exact.

Each site's final level is lam_j = min(its cap level, lam* of every constraint it loads),
where lam*_i is the level at which constraint i fills given the sites that froze before it.
"""

from __future__ import annotations

import numpy as np

from gridshare.allocation.driver import solve
from gridshare.allocation.network import Network, interval_chunks
from gridshare.allocation.problem import AllocationProblem, AllocationResult
from gridshare.allocation.waterfill import water_level


def _tree(net: Network, slack: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Radial fast path: a constraint's fill level depends only on its subtree, so go bottom-up."""
    assert net.levels is not None and net.level_paths is not None
    if not net.levels:
        return tau
    paths = net.level_paths
    current = np.take(tau, paths[0], axis=1)  # columns in the deepest level's entry order
    for level, path in zip(net.levels, paths[1:], strict=True):
        width = level.n_entries
        tau_e = np.ascontiguousarray(current[:, :width])
        coef = level.value * net.weight[level.site]
        lam = water_level(coef, tau_e, level.starts, np.take(slack, level.groups, axis=1))
        np.minimum(tau_e, np.repeat(lam, level.counts, axis=1), out=current[:, :width])
        current = np.take(current, path, axis=1)  # on to the next level's order (or site order)
    return current


def _general(net: Network, slack: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Any non-negative sensitivities (e.g. voltage rows): settle constraints in rounds.

    A constraint's candidate level (computed with the sites frozen so far) can only rise as
    more sites freeze, so a candidate no larger than that of every unsettled constraint it
    shares a site with is final. Each round settles at least the lowest one per interval.
    """
    ent = net.entries
    if ent.n_entries == 0:
        return tau
    tau = tau.copy()
    pat = net.patterns
    n_intervals, n_rows = tau.shape[0], net.sensitivity.shape[0]
    coef = ent.value * net.weight[ent.site]
    target = np.take(slack, ent.groups, axis=1)
    settled = np.zeros((n_intervals, ent.groups.shape[0]), dtype=bool)
    rows = np.arange(n_intervals)

    def per_pattern(row_values: np.ndarray) -> np.ndarray:
        """Lowest value over each pattern's constraints, plus +inf for 'loads nothing'."""
        full = np.full((row_values.shape[0], n_rows), np.inf)
        full[:, ent.groups] = row_values
        lowest = np.minimum.reduceat(np.take(full, pat.pattern_rows, axis=1), pat.pattern_starts, axis=1)
        return np.hstack([lowest, np.full((lowest.shape[0], 1), np.inf)])

    while rows.size:
        sub_tau = tau[rows]
        sub_settled = settled[rows]
        lam = water_level(coef, np.take(sub_tau, ent.site, axis=1), ent.starts, target[rows])
        never = np.isinf(lam)
        lam_open = np.where(sub_settled, np.inf, lam)
        # the lowest open candidate each constraint shares a site with (itself included)
        pattern_min = per_pattern(lam_open)
        neighbour_min = np.minimum.reduceat(
            np.take(pattern_min, pat.row_patterns, axis=1), pat.row_starts, axis=1
        )
        accept = ~sub_settled & ((lam_open <= neighbour_min) | never)
        freeze = per_pattern(np.where(accept & ~never, lam, np.inf))
        np.minimum(sub_tau, np.take(freeze, pat.site_pattern, axis=1), out=sub_tau)
        tau[rows] = sub_tau
        settled[rows] = sub_settled | accept
        rows = rows[~settled[rows].all(axis=1)]
    return tau


def prorata_limits(net: Network, headroom: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Pro-rata limits (T, n) between lo and hi; overloaded constraints keep their sites at lo."""
    slack = headroom - net.load(lo)
    tau = (hi - lo) / net.weight
    path = _tree if net.levels is not None else _general
    # a few intervals at a time: (intervals x entries) scratch arrays stay cache- and mmap-friendly
    chunks = interval_chunks(tau.shape[0], max(net.entries.n_entries, tau.shape[1]))
    tau = np.vstack([path(net, slack[part], tau[part]) for part in chunks] or [tau])
    return np.clip(lo + net.weight * tau, lo, hi)


def allocate_prorata(problem: AllocationProblem, *, use_tree: bool = True) -> AllocationResult:
    """Share headroom pro-rata by weight; `use_tree=False` forces the general algorithm."""
    return solve(
        problem, lambda net: lambda h, lo, hi: prorata_limits(net, h, lo, hi), use_tree=use_tree, prune=True
    )
