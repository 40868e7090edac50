"""Covered-row pruning (allocation/redundant.py) before and after, on the generated feeders' real rows.

Builds bench_recompute's generated feeder (zone transformer -> 10 feeders -> distribution
transformers -> sites) at each size, runs the envelope computation up to the allocation and keeps
the export and import problems it hands the rule, then times `redundant_rows` on both directions:
the m x m x n ratio-tensor version it replaced ("before", kept below) and the current one ("after"),
in the same run, and checks they drop the same rows. "before" is skipped where its tensors alone
would pass --before-gib.

    .venv/bin/python -m bench.bench_redundant [--sites 1000 2000 10000] [--repeats 3] [--before-gib 4]

Columns per size: rows x sites of one direction, distinct support sets, rows dropped, then for each
version the best wall seconds of --repeats runs over both directions and the peak traced (numpy)
memory of one run.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from unittest import mock

import numpy as np

import gridshare.envelopes.compute as envelope_compute
from bench.bench_recompute import T0, feeder_document
from gridshare.allocation import AllocationProblem, AllocationResult
from gridshare.allocation.redundant import RATIO_MARGIN, redundant_rows
from gridshare.grid.netfile import parse_network_document

Prune = Callable[[np.ndarray, np.ndarray], np.ndarray]


def redundant_rows_before(sensitivity: np.ndarray, headroom: np.ndarray) -> np.ndarray:
    """The version this bench measures against: an (m, m, n) ratio tensor and a loop over rows."""
    s = np.asarray(sensitivity, dtype=np.float64)
    h = np.asarray(headroom, dtype=np.float64)
    m = s.shape[0]
    out = np.zeros(m, dtype=bool)
    if m < 2:
        return out
    support = s > 0
    outside = support.astype(np.float64) @ (~support).T.astype(np.float64)
    has_any = np.asarray(support.any(axis=1), dtype=bool)
    subset: np.ndarray = (outside == 0) & has_any[:, None]
    np.fill_diagonal(subset, False)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            support[:, None, :], s[:, None, :] / np.where(support[None, :, :], s[None, :, :], 1.0), 0.0
        )
    scale = ratio.max(axis=2) * (1 + RATIO_MARGIN)
    h_t = np.ascontiguousarray(h.T)
    for i in range(m):
        candidates = np.flatnonzero(subset[i] & ~out)
        if candidates.size == 0:
            continue
        out[i] = bool(np.any(np.all(scale[i, candidates, None] * h_t[candidates] <= h_t[i][None, :], axis=1)))
    return out


def feeder_problems(n_sites: int) -> list[AllocationProblem]:
    """The export and import problems the envelope computation builds for the generated feeder."""
    nf = parse_network_document(feeder_document(n_sites))
    problems: list[AllocationProblem] = []

    def keep(problem: AllocationProblem, rule: str) -> AllocationResult:
        problems.append(problem)
        n_int, m = problem.headroom.shape
        return AllocationResult(
            limit_w=np.zeros((n_int, problem.n_sites)),
            loading=np.zeros((n_int, m)),
            binding=np.zeros((n_int, m), dtype=bool),
            infeasible=[],
        )

    with mock.patch.object(envelope_compute, "_default_allocate", lambda: keep):
        envelope_compute.compute_envelopes(nf.network, nf.sites, datetime.fromtimestamp(T0, tz=UTC))
    return problems


def measure(
    prune: Prune, problems: list[AllocationProblem], repeats: int
) -> tuple[float, float, list[np.ndarray]]:
    """(best seconds over both directions, peak traced MiB of one run, the masks)."""
    tracemalloc.start()
    masks = [prune(p.sensitivity, p.headroom) for p in problems]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for p in problems:
            prune(p.sensitivity, p.headroom)
        best = min(best, time.perf_counter() - t)
    return float(best), peak / 2**20, masks


def main() -> None:
    parser = argparse.ArgumentParser(description="redundant_rows before and after on generated feeders")
    parser.add_argument("--sites", type=int, nargs="+", default=[1000, 2000, 10_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before-gib", type=float, default=4.0, help="skip 'before' above this tensor size")
    args = parser.parse_args()
    header = (
        f"{'sites':>6} {'rows x sites':>13} {'sets':>5} {'dropped':>8} "
        f"{'before s':>9} {'before MiB':>11} {'after s':>8} {'after MiB':>10} {'same':>5}"
    )
    print(header)
    print("-" * len(header))
    for n_sites in args.sites:
        problems = feeder_problems(n_sites)
        m, n = problems[0].sensitivity.shape
        sets = len(np.unique(problems[0].sensitivity > 0, axis=0))
        after_s, after_mib, after = measure(redundant_rows, problems, args.repeats)
        dropped = "/".join(str(int(mask.sum())) for mask in after)
        tensor_gib = m * m * n * 8 / 2**30
        if tensor_gib <= args.before_gib:
            before_s, before_mib, before = measure(redundant_rows_before, problems, args.repeats)
            same = all(np.array_equal(a, b) for a, b in zip(after, before, strict=True))
            before_cols = f"{before_s:>9.3f} {before_mib:>11.0f}"
            same_col = "yes" if same else "NO"
        else:
            before_cols = f"{'skipped':>9} {f'>{tensor_gib:.0f} GiB':>11}"
            same_col = "-"
        print(
            f"{n_sites:>6} {f'{m} x {n}':>13} {sets:>5} {dropped:>8} "
            f"{before_cols} {after_s:>8.3f} {after_mib:>10.1f} {same_col:>5}"
        )
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
