"""Constraints that can never bind first: drop them before a rule runs (same answer, less work).

Row i is redundant when another row k covers it over the whole horizon: every site loading i loads
k, with a * S_k >= S_i site by site for some a > 0, and a * h_k(t) <= h_i(t) in every interval.
Then any non-negative limits that respect k respect i, so the feasible set, and with it what
pro-rata and LIFO allocate, is unchanged. On a radial feeder most rows are covered: a voltage
bound near the substation by one further out, a feeder-head rating by the transformer's. A year of
a 100-site MV grid has 200 rows per direction, of which a few dozen can bind.
"""

from __future__ import annotations

import numpy as np

#: Ratios are inflated by this much so rounding never makes a covered row look safe when it is not.
RATIO_MARGIN = 1e-12


def redundant_rows(sensitivity: np.ndarray, headroom: np.ndarray) -> np.ndarray:
    """(m,) bool: rows covered by a kept row in every interval (of rows covering each other, one stays)."""
    s = np.asarray(sensitivity, dtype=np.float64)
    h = np.asarray(headroom, dtype=np.float64)
    m = s.shape[0]
    out = np.zeros(m, dtype=bool)
    if m < 2:
        return out
    support = s > 0
    # subset[i, k]: every site loading row i also loads row k
    outside = support.astype(np.float64) @ (~support).T.astype(np.float64)
    has_any = np.asarray(support.any(axis=1), dtype=bool)
    subset: np.ndarray = (outside == 0) & has_any[:, None]
    np.fill_diagonal(subset, False)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            support[:, None, :], s[:, None, :] / np.where(support[None, :, :], s[None, :, :], 1.0), 0.0
        )
    scale = ratio.max(axis=2) * (1 + RATIO_MARGIN)  # scale[i, k] = a with a * S_k >= S_i
    h_t = np.ascontiguousarray(h.T)  # (m, T)
    for i in range(m):
        candidates = np.flatnonzero(subset[i] & ~out)
        if candidates.size == 0:
            continue
        # rows already dropped are no candidates, so of rows covering each other one always stays
        out[i] = bool(np.any(np.all(scale[i, candidates, None] * h_t[candidates] <= h_t[i][None, :], axis=1)))
    return out
