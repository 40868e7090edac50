"""Constraints that can never bind first: drop them before a rule runs (same answer, less work).

Row i is redundant when another row k covers it over the whole horizon: every site loading i loads
k, with a * S_k >= S_i site by site for some a > 0, and a * h_k(t) <= h_i(t) in every interval.
Then any non-negative limits that respect k respect i, so the feasible set, and with it what
pro-rata and LIFO allocate, is unchanged. On a radial feeder most rows are covered: a voltage
bound near the substation by one further out, a feeder-head rating by the transformer's. A year of
a 100-site MV grid has 200 rows per direction, of which a few dozen can bind.

Only pairs whose supports nest are looked at, so the work follows the feeder's shape rather than
m * m * n: rows are grouped by support set (on a radial feeder whole feeders share one), the groups'
nesting comes from one sparse or dense product over site sets, and the ratio a is computed per
candidate pair over the smaller row's sites only, in bounded chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sparse

#: Ratios are inflated by this much so rounding never makes a covered row look safe when it is not.
RATIO_MARGIN = 1e-12

#: Largest temporary (elements) a chunk may build: 2**21 float64 values are 16 MiB.
CHUNK_ELEMENTS = 1 << 21

#: A product over site sets costs about this many times less per term dense (BLAS) than sparse.
DENSE_SPEEDUP = 32


def redundant_rows(sensitivity: np.ndarray, headroom: np.ndarray) -> np.ndarray:
    """(m,) bool: rows covered by a kept row in every interval (of rows covering each other, one stays)."""
    s = np.asarray(sensitivity, dtype=np.float64)
    h = np.asarray(headroom, dtype=np.float64)
    m = s.shape[0]
    out = np.zeros(m, dtype=bool)
    if m < 2:
        return out
    support = s > 0
    if not support.any():
        return out
    group, members, supersets = _nested_groups(support)
    h_t = np.ascontiguousarray(h.T)  # (m, T)
    for i in range(m):
        outer = supersets[group[i]]
        if outer.size == 0:  # a row loaded by no site is covered by nothing
            continue
        rows = np.concatenate([members[g] for g in outer]) if outer.size > 1 else members[outer[0]]
        # rows already dropped are no candidates, so of rows covering each other one always stays
        candidates = rows[(rows != i) & ((rows > i) | ~out[rows])]
        if candidates.size:
            out[i] = _covered(s, h_t, i, np.flatnonzero(support[i]), candidates)
    return out


def _nested_groups(support: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Rows grouped by support set: (group of each row, rows of each group, groups holding each's set).

    A group's own number is among its supersets (rows with equal supports cover each other); a group
    with an empty support set has none (no site loads it, so no row covers it).
    """
    seen: dict[bytes, int] = {}  # a hash per packed row: sorting them (np.unique) costs more
    group = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in np.packbits(support, axis=1)])
    first = np.unique(group, return_index=True)[1]  # a row of each group
    order = np.argsort(group, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(group[order])) + 1)
    sets = support[first]  # (u, n): one row per distinct support set
    size = sets.sum(axis=1)
    supersets: list[np.ndarray] = []
    for lo, common in _shared_sites(sets):
        sub = size[lo : lo + common.shape[0], None]
        supersets.extend(np.flatnonzero(row) for row in (common == sub) & (sub > 0))
    return group, members, supersets


def _shared_sites(sets: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first set, sites each of a block of sets shares with every set), block by block.

    Sparse when few sets share each site (a radial feeder: a site is in the sets along its path),
    dense BLAS otherwise; float32 counts are exact below 2**24, so sites are summed in parts.
    """
    u, n = sets.shape
    per_site = sets.sum(axis=0, dtype=np.float64)
    block = max(1, CHUNK_ELEMENTS // max(u, 1))
    if float(u) * u * n > DENSE_SPEEDUP * float(per_site @ per_site):
        sets_csr = sparse.csr_matrix(sets, dtype=np.float64)
        for lo in range(0, u, block):
            yield lo, (sets_csr[lo : lo + block] @ sets_csr.T).toarray()
        return
    part = 1 << 23
    sets_f = sets.astype(np.float32)
    for lo in range(0, u, block):
        common = np.zeros((min(block, u - lo), u))
        for c in range(0, n, part):
            common += sets_f[lo : lo + block, c : c + part] @ sets_f[:, c : c + part].T
        yield lo, common


def _covered(s: np.ndarray, h_t: np.ndarray, i: int, sites: np.ndarray, candidates: np.ndarray) -> bool:
    """Whether some candidate row k (support holding row i's) covers row i in every interval.

    Candidates are first screened on one site's ratio: a is at least that ratio, so where the ratio
    times a non-negative h_k already exceeds h_i, a times it does too (rounding is monotone). The
    screen looks at row i's tightest interval first, then at all; only the survivors pay for the
    ratio over all of row i's sites.
    """
    s_i = s[i, sites]
    h_i = h_t[i][None, :]
    probe = sites[int(np.argmax(s_i))]
    tight = int(np.argmin(h_t[i])) if h_t.shape[1] else None
    step = max(1, CHUNK_ELEMENTS // max(sites.size, h_t.shape[1], 1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for lo in range(0, candidates.size, step):
            rows = candidates[lo : lo + step]
            low = (s[i, probe] / s[rows, probe]) * (1 + RATIO_MARGIN)
            if tight is not None:
                h_tight = h_t[rows, tight]
                alive = ~((h_tight >= 0) & (low * h_tight > h_i[0, tight]))
                rows, low = rows[alive], low[alive]
            h_k = h_t[rows]
            alive = ~np.any((h_k >= 0) & (low[:, None] * h_k > h_i), axis=1)
            if not alive.any():
                continue
            rows, h_k = rows[alive], h_k[alive]
            ratio = s_i[None, :] / s[np.ix_(rows, sites)]
            scale = ratio.max(axis=1) * (1 + RATIO_MARGIN)  # scale[k] = a with a * S_k >= S_i
            if np.any(np.all(scale[:, None] * h_k <= h_i, axis=1)):
                return True
    return False
