"""The one piece of numerics pro-rata needs: where does a rising water level hit a constraint?

For each group g (a constraint) and interval t, find the level lam >= 0 solving

    sum_e coef_e * min(lam, tau[t, e]) = target[t, g]          (e in group g)

where tau is the level at which entry e stops rising (its cap, or a constraint it already
hit). The left side is concave, piecewise linear and non-decreasing, so Newton's method
climbs onto the root monotonically from below and stops exactly once no further entry
saturates: a handful of passes in practice, never more than one per entry.

Most (interval, group) pairs either never fill or settle after a step or two, so once the
moving pairs cover a small part of the grid the iteration continues on a flat list of them.
"""

from __future__ import annotations

import numpy as np

# Below this share of the (interval x entry) grid, gathering the moving pairs into a flat
# list is cheaper than sweeping whole intervals.
FLATTEN_BELOW = 0.4


def _newton_step(
    tau: np.ndarray,
    ctau: np.ndarray,
    coef: np.ndarray,
    level: np.ndarray,
    target: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray, int],
) -> np.ndarray:
    """One Newton step from below: linearise at the current saturation pattern, solve.

    `groups` is (entries per group, first entry of each group, axis the entries run along).
    """
    repeat_counts, starts, axis = groups
    saturated = tau < np.repeat(level, repeat_counts, axis=axis)
    filled = np.add.reduceat(np.where(saturated, ctau, 0.0), starts, axis=axis)
    free = np.add.reduceat(np.where(saturated, 0.0, coef), starts, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = (target - filled) / free
    return np.where(free > 0, np.maximum(step, level), level)


def water_level(coef: np.ndarray, tau: np.ndarray, starts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Solve the water-filling equation above for every (interval, group).

    coef (E,) > 0; tau (T, E) finite, >= 0; entries come in contiguous, non-empty groups whose
    first entries are at `starts` (G,); target (T, G).
    Returns (T, G): 0 where target <= 0 (the group is full already), +inf where the group can
    never fill, else the root.
    """
    n_entries = tau.shape[1]
    counts = np.diff(np.r_[starts, n_entries])
    ctau = coef * tau
    capacity = np.add.reduceat(ctau, starts, axis=1)
    level = np.maximum(target, 0.0) / np.add.reduceat(coef, starts)
    never = capacity <= target
    level[never] = np.inf
    moving = ~never & (target > 0)

    # Phase 1: whole intervals at a time while many pairs are still moving.
    rows = np.flatnonzero(moving.any(axis=1))
    if rows.size < tau.shape[0]:
        tau, ctau, target = tau[rows], ctau[rows], target[rows]
    sub_moving = moving[rows]
    for _ in range(n_entries + 2):
        if rows.size == 0 or (sub_moving @ counts).sum() < FLATTEN_BELOW * rows.size * n_entries:
            break
        sub_level = level[rows]
        step = _newton_step(tau, ctau, coef, sub_level, target, (counts, starts, 1))
        sub_moving &= step > sub_level
        level[rows] = step
        keep = sub_moving.any(axis=1)
        if not keep.all():
            rows, sub_moving = rows[keep], sub_moving[keep]
            tau, ctau, target = tau[keep], ctau[keep], target[keep]
    if rows.size == 0:
        return level

    # Phase 2: a flat list of the (interval, group) pairs still moving, one segment each.
    local_t, pair_g = np.nonzero(sub_moving)
    pair_t = rows[local_t]
    lengths = counts[pair_g]
    offsets = np.cumsum(lengths) - lengths
    entry = np.repeat(starts[pair_g] - offsets, lengths) + np.arange(int(lengths.sum()))
    flat = np.repeat(local_t * n_entries, lengths) + entry
    tau_f, ctau_f, coef_f = tau.reshape(-1)[flat], ctau.reshape(-1)[flat], coef[entry]
    pair_target = target[local_t, pair_g]
    for _ in range(n_entries + 2):
        pair_level = level[pair_t, pair_g]
        step = _newton_step(tau_f, ctau_f, coef_f, pair_level, pair_target, (lengths, offsets, 0))
        still = step > pair_level
        level[pair_t, pair_g] = step
        if not still.any():
            break
        if not still.all():
            keep = np.repeat(still, lengths)
            tau_f, ctau_f, coef_f = tau_f[keep], ctau_f[keep], coef_f[keep]
            pair_t, pair_g, pair_target = pair_t[still], pair_g[still], pair_target[still]
            lengths = lengths[still]
            offsets = np.cumsum(lengths) - lengths
    return level
