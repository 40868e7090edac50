"""Covered-row pruning drops exactly the rows the definition says, however the work is split up.

`redundant_rows` avoids the m x m x n comparison by grouping rows by support set and looking only at
nested pairs, in chunks, with a cheap screen first. A planner would notice any difference as a
different set of rows reaching the rule, so each case is checked against the definition written out
pair by pair below: on random matrices full of ties (equal rows, scaled copies, rows no site loads,
zero, negative and infinite headroom), on radial feeders with thermal and voltage rows, and on the
property suites' problems; with the sparse and the dense nesting test and with one-row chunks.
"""

from __future__ import annotations

import tracemalloc
from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gridshare.allocation import redundant
from gridshare.allocation.redundant import RATIO_MARGIN, redundant_rows
from tests.support.allocation_cases import FAST, meshed, radial

#: (DENSE_SPEEDUP, CHUNK_ELEMENTS): as shipped, always sparse, always dense, one row per chunk.
PATHS = ((redundant.DENSE_SPEEDUP, redundant.CHUNK_ELEMENTS), (0.0, 1 << 21), (np.inf, 1 << 21), (32, 1))


def covered_by_definition(sensitivity: np.ndarray, headroom: np.ndarray) -> np.ndarray:
    """Rows in order; row i goes when a row k still kept covers it (the module docstring's rule).

    k covers i when every site loading i loads k and a * h_k <= h_i in every interval, with a the
    largest S_i / S_k over i's sites inflated by RATIO_MARGIN; rows after i are all still kept.
    """
    m, n = sensitivity.shape
    dropped = [False] * m
    for i in range(m):
        sites_i = [j for j in range(n) if sensitivity[i, j] > 0]
        if not sites_i:
            continue
        for k in range(m):
            if k == i or dropped[k] or any(not sensitivity[k, j] > 0 for j in sites_i):
                continue
            a = max(sensitivity[i, j] / sensitivity[k, j] for j in sites_i) * (1 + RATIO_MARGIN)
            if all(a * headroom[t, k] <= headroom[t, i] for t in range(headroom.shape[0])):
                dropped[i] = True
                break
    return np.array(dropped, dtype=bool)


def assert_same_rows(sensitivity: np.ndarray, headroom: np.ndarray, path: tuple[float, int]) -> None:
    speedup, chunk = path
    with (
        mock.patch.object(redundant, "DENSE_SPEEDUP", speedup),
        mock.patch.object(redundant, "CHUNK_ELEMENTS", chunk),
    ):
        got = redundant_rows(sensitivity, headroom)
    np.testing.assert_array_equal(got, covered_by_definition(sensitivity, headroom))


@st.composite
def tied_matrices(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Few distinct values, then rows copied or scaled from others, so covers and ties abound."""
    m = draw(st.integers(2, 9))
    n = draw(st.integers(1, 7))
    n_intervals = draw(st.integers(0, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sensitivity = rng.choice([0.0, 0.0, 0.5, 1.0, 2.0, 1e-3, 3.0], size=(m, n))
    headroom = rng.choice([0.0, 100.0, 200.0, 300.0, -100.0, np.inf], size=(n_intervals, m))
    for _ in range(draw(st.integers(0, m))):
        src, dst = rng.integers(0, m, size=2)
        kind = draw(st.sampled_from(("equal", "scaled", "empty", "narrower")))
        if kind == "equal":  # rows that cover each other: exactly one of them stays
            sensitivity[dst], headroom[:, dst] = sensitivity[src], headroom[:, src]
        elif kind == "scaled":  # the same row in other units
            factor = draw(st.sampled_from((0.5, 2.0, 0.1, 3.0)))
            sensitivity[dst], headroom[:, dst] = sensitivity[src] * factor, headroom[:, src] * factor
        elif kind == "empty":  # a row no site loads
            sensitivity[dst] = 0.0
        else:  # fewer sites than src, more headroom: covered unless src goes first
            keep = rng.random(n) < 0.5
            sensitivity[dst] = np.where(keep, sensitivity[src], 0.0)
            headroom[:, dst] = headroom[:, src] + rng.choice([0.0, 100.0], size=n_intervals)
    return sensitivity, headroom


@st.composite
def feeders(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A random radial feeder: a thermal row per branch (sites below it) and a voltage row per node.

    A voltage row's value for a site is the resistance its path to the source shares with the
    node's, so supports nest along the path and whole feeders share one, as on real feeders.
    """
    n_nodes = draw(st.integers(2, 12))
    parent = [-1] + [draw(st.integers(0, v - 1)) for v in range(1, n_nodes)]
    r = draw(st.lists(st.sampled_from((0.0, 0.1, 0.2, 0.5)), min_size=n_nodes, max_size=n_nodes))
    n_sites = draw(st.integers(1, 12))
    site_node = draw(st.lists(st.integers(0, n_nodes - 1), min_size=n_sites, max_size=n_sites))
    n_intervals = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def path(v: int) -> set[int]:
        nodes = set()
        while v > 0:  # node 0 is the source; branch v feeds node v from its parent
            nodes.add(v)
            v = parent[v]
        return nodes

    paths = [path(v) for v in range(n_nodes)]
    thermal = np.array([[1.0 if b in paths[v] else 0.0 for v in site_node] for b in range(1, n_nodes)])
    voltage = np.array(
        [[sum(r[b] for b in paths[v] & paths[u]) for u in site_node] for v in range(1, n_nodes)]
    )
    sensitivity = np.vstack([thermal, voltage])
    reach = rng.integers(0, 40, size=(n_intervals, n_sites)) * 100.0 @ sensitivity.T
    fraction = rng.choice([-0.1, 0.0, 0.3, 0.6, 1.0, 1.1], size=reach.shape)
    return sensitivity, np.round(reach * fraction, -2)


@FAST
@given(case=tied_matrices(), path=st.sampled_from(PATHS))
def test_random_matrices_with_ties_drop_the_defined_rows(
    case: tuple[np.ndarray, np.ndarray], path: tuple[float, int]
) -> None:
    assert_same_rows(*case, path)


@FAST
@given(case=feeders(), path=st.sampled_from(PATHS))
def test_radial_feeders_drop_the_defined_rows(
    case: tuple[np.ndarray, np.ndarray], path: tuple[float, int]
) -> None:
    assert_same_rows(*case, path)


@FAST
@given(p=st.one_of(radial(), meshed()), path=st.sampled_from(PATHS))
def test_property_suite_problems_drop_the_defined_rows(p, path: tuple[float, int]) -> None:  # type: ignore[no-untyped-def]
    doubled = np.vstack([p.sensitivity, p.sensitivity])  # every row tied with a copy
    assert_same_rows(doubled, np.hstack([p.headroom, p.headroom]), path)
    assert_same_rows(p.sensitivity, p.headroom, path)


def test_of_equal_rows_covering_each_other_exactly_one_stays() -> None:
    """With no headroom (or unlimited) copies cover each other despite the rounded-up ratio."""
    rows = np.array([[1.0, 2.0, 0.0]] * 3)
    for headroom in (np.zeros((2, 3)), np.full((2, 3), np.inf)):
        assert redundant_rows(rows, headroom).sum() == 2
    assert not redundant_rows(rows, np.full((2, 3), 100.0)).any()  # 100 * (1 + 1e-12) > 100: all stay


def test_rows_no_site_loads_stay() -> None:
    sensitivity = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(redundant_rows(sensitivity, np.zeros((1, 3))), [False, False, False])


def test_a_10000_site_feeder_needs_megabytes_not_gigabytes() -> None:
    """10 feeders x 20 transformers x 50 sites, thermal and voltage rows: ~420 rows x 10,000 sites."""
    feeder = np.repeat(np.arange(10), 1000)
    transformer = np.repeat(np.arange(200), 50)
    rows = [np.ones(10_000)]
    rows += [(feeder == f) * 1.0 for f in range(10)] + [(transformer == x) * 1.0 for x in range(200)]
    rows += [(feeder == f) * 0.3 for f in range(10)]  # feeder-head voltage
    rows += [(feeder == x // 20) * 0.3 + (transformer == x) * 0.01 for x in range(200)]  # LV bus voltage
    sensitivity = np.array(rows)
    headroom = np.linspace(1e5, 5e6, 288)[:, None] * np.linspace(1.0, 2.0, len(rows))[None, :]
    tracemalloc.start()
    dropped = redundant_rows(sensitivity, headroom)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 2**20  # the ratio tensor alone would be m * m * n * 8 bytes = 14 GiB
    assert dropped.any() and not dropped.all()
