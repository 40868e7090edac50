"""Benchmark the allocation rules on a seeded, feeder-sized problem (a script, not a test).

Default: 10,000 sites under 1 zone transformer, 10 feeders and 200 distribution transformers
(211 thermal rows), 288 five-minute intervals. Targets on the 2-core machine: pro-rata, tranche
and LIFO <= 0.5 s for the whole day, max-total <= 1 s per interval, peak memory <= 2 GiB.

    .venv/bin/python bench/bench_allocation.py [--voltage] [--ramp] [--sites N] [--intervals T]

Columns: wall seconds of the first run and the median of --repeats runs, median CPU seconds,
peak traced (numpy) memory, mean total limit, binding (interval, row) pairs, reported
infeasibilities, and the worst overload that was NOT reported (row units; should be ~0).
Max-total is timed on a few noon intervals and shown per interval, its one-off cvxpy
compile spread over them.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from gridshare.allocation import AllocationProblem, AllocationResult
from gridshare.allocation.lifo import allocate_lifo
from gridshare.allocation.maxtotal import allocate_max_total
from gridshare.allocation.prorata import allocate_prorata
from gridshare.allocation.tranche import allocate_tranche


def make_problem(
    n_sites: int = 10_000,
    n_feeders: int = 10,
    n_transformers: int = 200,
    n_intervals: int = 288,
    *,
    voltage: bool = False,
    ramp: bool = False,
    seed: int = 20250601,
) -> AllocationProblem:
    """A radial export problem whose rows bind around solar noon, at every level of the tree."""
    rng = np.random.default_rng(seed)
    feeder_of_tx = np.arange(n_transformers) % n_feeders
    tx_of_site = rng.integers(0, n_transformers, n_sites)
    feeder_of_site = feeder_of_tx[tx_of_site]
    kind = rng.random(n_sites)
    agreed_w = np.where(kind < 0.70, 5e3, np.where(kind < 0.95, 10e3, rng.uniform(30e3, 200e3, n_sites)))
    floor_w = np.where(rng.random(n_sites) < 0.4, np.minimum(1.5e3, agreed_w), 0.0)

    rows = [np.ones(n_sites, dtype=bool)]
    rows += [feeder_of_site == f for f in range(n_feeders)]
    rows += [tx_of_site == x for x in range(n_transformers)]
    sensitivity = np.array(rows, dtype=np.float64)
    names = ["zone"] + [f"feeder-{f}" for f in range(n_feeders)] + [f"tx-{x}" for x in range(n_transformers)]

    hours = np.arange(n_intervals) * 24.0 / n_intervals
    solar = np.clip(np.sin((hours - 6.0) / 12.0 * np.pi), 0.0, None)  # 0 at 06:00 and 18:00
    evening = 0.6 + 0.4 * np.cos((hours - 19.0) / 24.0 * 2 * np.pi)
    reach_w = sensitivity @ agreed_w
    rating_w = reach_w * rng.uniform(0.5, 1.1, len(rows))
    load_w = reach_w * rng.uniform(0.05, 0.2, len(rows))
    passive_w = reach_w * rng.uniform(0.1, 0.5, len(rows))
    headroom = rating_w + np.outer(evening, load_w) - np.outer(solar, passive_w)

    if voltage:  # one volt-rise row per feeder: dV/dP grows with electrical distance
        distance = rng.uniform(0.2, 1.0, n_sites)
        dv_per_w = 2e-8
        v_rows = np.array([(feeder_of_site == f) * distance * dv_per_w for f in range(n_feeders)])
        v_headroom = 0.05 - np.outer(solar, rng.uniform(0.0, 0.02, n_feeders))
        sensitivity = np.vstack([sensitivity, v_rows])
        headroom = np.hstack([headroom, v_headroom])
        names += [f"volt-{f}" for f in range(n_feeders)]

    return AllocationProblem(
        site_ids=tuple(f"site-{j}" for j in range(n_sites)),
        constraint_names=tuple(names),
        sensitivity=sensitivity,
        headroom=headroom,
        floor_w=np.tile(floor_w, (n_intervals, 1)),
        cap_w=np.tile(agreed_w, (n_intervals, 1)),
        weight=agreed_w,
        queue_position=rng.permutation(n_sites),
        max_step_w=0.2 * agreed_w if ramp else None,
        tranche_size_w=0.7 * ((sensitivity > 0) @ agreed_w),
        initial_w=floor_w.copy() if ramp else None,
    )


def measure(
    rule: Callable[[AllocationProblem], AllocationResult], problem: AllocationProblem, repeats: int
) -> dict[str, float]:
    """Wall time of the first (cold) run and the median of `repeats` runs, then the peak traced
    memory of one more run (tracing slows Python, so it is never timed)."""
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = rule(problem)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    tracemalloc.start()
    rule(problem)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    over = result.loading - problem.headroom
    for item in result.infeasible:  # reported overloads are honest; look for silent ones
        over[item.interval, problem.constraint_names.index(item.constraint)] = 0.0
    return {
        "cold_s": times[0],
        "median_s": float(np.median(times)),
        "cpu_s": float(np.median(cpu_times)),
        "peak_mib": peak / 2**20,
        "total_mw": float(result.limit_w.sum(axis=1).mean() / 1e6),
        "binding": float(result.binding.sum()),
        "infeasible": float(len(result.infeasible)),
        "silent_over": float(max(over.max(), 0.0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--intervals", type=int, default=288)
    parser.add_argument("--lp-intervals", type=int, default=4, help="intervals timed for max-total")
    parser.add_argument("--voltage", action="store_true", help="add 10 voltage rows (general path)")
    parser.add_argument("--ramp", action="store_true", help="limit steps to 20 %% of agreed capacity")
    parser.add_argument("--seed", type=int, default=20250601)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per rule (median reported)")
    args = parser.parse_args()

    problem = make_problem(
        args.sites, n_intervals=args.intervals, voltage=args.voltage, ramp=args.ramp, seed=args.seed
    )
    print(
        f"{problem.n_sites} sites, {problem.n_constraints} constraints, {problem.n_intervals} intervals"
        f"{' (voltage rows)' if args.voltage else ''}{' (ramp)' if args.ramp else ''}"
    )
    # warm up imports and first-call code paths on a toy problem, so "cold" means cold data only
    toy = make_problem(60, 2, 6, 2, voltage=args.voltage, ramp=args.ramp, seed=1)
    for rule in (allocate_prorata, allocate_tranche, allocate_lifo, allocate_max_total):
        rule(toy)

    rows = []
    for name, rule in (
        ("pro-rata", allocate_prorata),
        ("tranche", allocate_tranche),
        ("lifo", allocate_lifo),
    ):
        rows.append((name, f"day ({problem.n_intervals})", measure(rule, problem, args.repeats)))

    # max-total: the busiest intervals around noon, per interval (cvxpy compiles once per call)
    first = max(0, problem.n_intervals // 2 - args.lp_intervals // 2)
    picked = slice(first, first + args.lp_intervals)
    lp_problem = replace(
        problem,
        headroom=problem.headroom[picked],
        floor_w=problem.floor_w[picked],
        cap_w=problem.cap_w[picked],
    )
    stats = measure(allocate_max_total, lp_problem, args.repeats)
    for key in ("cold_s", "median_s", "cpu_s"):
        stats[key] /= lp_problem.n_intervals
    rows.append(("max-total", f"per interval ({lp_problem.n_intervals})", stats))
    # the same intervals under the other rules, so that totals can be compared
    for name, rule in (("pro-rata", allocate_prorata), ("lifo", allocate_lifo)):
        total = rule(lp_problem).limit_w.sum(axis=1).mean() / 1e6
        print(f"noon intervals, mean total: {name} {total:.3f} MW vs max-total {stats['total_mw']:.3f} MW")

    header = (
        f"{'rule':<10} {'scope':<18} {'cold s':>7} {'median s':>8} {'cpu s':>6} {'peak MiB':>9} "
        f"{'mean MW':>8} {'binding':>8} {'infeas.':>7} {'silent over':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, scope, s in rows:
        print(
            f"{name:<10} {scope:<18} {s['cold_s']:>7.3f} {s['median_s']:>8.3f} {s['cpu_s']:>6.3f} "
            f"{s['peak_mib']:>9.1f} "
            f"{s['total_mw']:>8.2f} {s['binding']:>8.0f} {s['infeasible']:>7.0f} {s['silent_over']:>11.2g}"
        )
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
