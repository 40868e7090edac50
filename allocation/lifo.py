"""Pure LIFO: capacity by order of connection, the latest connector curtailed first.

Sites are served earliest-first; each takes as much as the constraints allow given the
earlier sites' allocations, with everyone's floor reserved up front. So a later site falls
to its floor before an earlier one at the same constraint loses anything (Ameren report:
of two 5 MW solar sites the second sees 5-10 % curtailment, the first 0-5 %).
"""

from __future__ import annotations

import numpy as np

from gridshare.allocation.driver import solve
from gridshare.allocation.network import Network, interval_chunks
from gridshare.allocation.problem import AllocationProblem, AllocationResult


def _tree(net: Network, slack: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Radial fast path: greedy in queue order on a tree is a running sum capped per subtree.

    What sites 1..k of a subtree can take together is min(its headroom, what they could take
    under its child constraints), so each level turns per-site increments into a capped
    running total and back into increments. No per-site loop.
    """
    assert net.levels is not None and net.level_paths is not None
    if not net.levels:
        return delta
    paths = net.level_paths
    current = np.take(delta, paths[0], axis=1)  # columns in the deepest level's entry order
    for level, path in zip(net.levels, paths[1:], strict=True):
        width = level.n_entries
        delta_e = current[:, :width]  # entries are in queue order within each constraint
        running = np.cumsum(delta_e, axis=1)
        before = np.zeros((running.shape[0], level.starts.shape[0]))
        before[:, 1:] = running[:, level.starts[1:] - 1]
        running -= np.repeat(before, level.counts, axis=1)
        room = np.maximum(np.take(slack, level.groups, axis=1), 0.0) / level.value[level.starts]
        np.minimum(running, np.repeat(room, level.counts, axis=1), out=running)
        increment = np.diff(running, axis=1, prepend=0.0)
        increment[:, level.starts] = running[:, level.starts]
        np.clip(increment, 0.0, delta_e, out=delta_e)
        current = np.take(current, path, axis=1)  # on to the next level's order (or site order)
    return current


def _general(net: Network, slack: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Any non-negative sensitivities: one site at a time in queue order, all intervals at once."""
    ent = net.entries
    by_site = np.argsort(ent.site, kind="stable")
    bounds = np.searchsorted(ent.site[by_site], np.arange(delta.shape[1] + 1))
    slack_rows = np.ascontiguousarray(slack.T)  # (m, T): one row per constraint
    want = np.ascontiguousarray(delta.T)  # (n, T)
    for site in net.order:
        picked = by_site[bounds[site] : bounds[site + 1]]
        if picked.size == 0:
            continue
        rows, values = ent.row[picked], ent.value[picked][:, None]
        room = (slack_rows[rows] / values).min(axis=0)
        take = np.clip(room, 0.0, want[site])
        want[site] = take
        slack_rows[rows] -= values * take
    return want.T


def lifo_limits(net: Network, headroom: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """LIFO limits (T, n) between lo and hi; overloaded constraints keep their sites at lo."""
    slack = headroom - net.load(lo)
    delta = hi - lo
    if net.levels is not None:  # a few intervals at a time, as for pro-rata
        chunks = interval_chunks(delta.shape[0], max(net.entries.n_entries, delta.shape[1]))
        delta = np.vstack([_tree(net, slack[part], delta[part]) for part in chunks] or [delta])
    else:  # the per-site loop wants all intervals at once (fewer Python steps)
        delta = _general(net, slack, delta)
    return np.clip(lo + delta, lo, hi)


def allocate_lifo(problem: AllocationProblem, *, use_tree: bool = True) -> AllocationResult:
    """Serve sites in connection order; `use_tree=False` forces the site-by-site algorithm."""
    return solve(
        problem, lambda net: lambda h, lo, hi: lifo_limits(net, h, lo, hi), use_tree=use_tree, prune=True
    )
