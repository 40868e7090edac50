"""Planner study speed: one rule over a year, tranche sizing, the AC check, peak memory.

Targets (issue 16): one rule, one year at 60-minute intervals on the demo feeder <= 2 s; at
15 minutes on SimBench 1-MV-rural--0-sw (102 sites) <= 15 s; tranche sizing <= 30 s; peak memory
<= 2 GiB. Also measured in the same run: the engine's local-time lookups before and after they were
vectorised (the old per-slot loop is kept here only as the reference), and `gridshare envelopes
compute` for a 60-minute year.

    .venv/bin/python -m bench.bench_plan                   # everything (SimBench import included)
    .venv/bin/python -m bench.bench_plan --skip-simbench   # the demo feeder only

Every figure is one run: wall time and the process's CPU time. On a machine shared with other work
(`/proc/loadavg` is printed) wall time is inflated; targets are judged on CPU time. The CLI line runs in
a child process (its CPU time is the child's).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from gridshare.grid.examples import demo_feeder_path
from gridshare.grid.localtime import local_fractional_hours, local_month_hour


def _timed(label: str, fn: Callable[[], Any], target_s: float | None = None) -> tuple[Any, float]:
    """Wall and CPU seconds of one call. On a machine shared with other work the CPU time is what this
    code costs (numpy here is single-threaded); targets are judged on it, and both are printed."""
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    verdict = (
        ""
        if target_s is None
        else f"  (target <= {target_s:.0f} s: {'met' if cpu <= target_s else 'MISSED'})"
    )
    print(f"{label:<66} {seconds:7.2f} s wall {cpu:7.2f} s cpu{verdict}", flush=True)
    return value, cpu


def _legacy_month_hour(epoch_s: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """The engine's old lookup (one zone query and one full scan per 15-minute slot), for comparison."""
    zone = ZoneInfo(tz)
    slot = epoch_s // 900
    month = np.empty(len(epoch_s), dtype=int)
    hour = np.empty(len(epoch_s), dtype=int)
    for s in np.unique(slot):
        local = datetime.fromtimestamp(int(s) * 900, tz=zone)
        mask = slot == s
        month[mask] = local.month
        hour[mask] = local.hour
    return month, hour


def _legacy_local_hours(epoch_s: np.ndarray, tz: str) -> np.ndarray:
    zone = ZoneInfo(tz)
    slot = epoch_s // 900
    offsets = np.empty(len(epoch_s))
    for s in np.unique(slot):
        offset = datetime.fromtimestamp(int(s) * 900, tz=zone).utcoffset()
        offsets[slot == s] = offset.total_seconds() if offset else 0.0
    return ((epoch_s + offsets) % 86400) / 3600.0


def timezone_loops() -> None:
    print("\n-- local time of every interval (IntervalTimes.build + local_hours), America/New_York")
    tz = "America/New_York"
    for label, step in (("60-minute year", 3600), ("15-minute year", 900)):
        epoch = int(datetime(2026, 1, 1, 5, tzinfo=UTC).timestamp()) + step * np.arange(365 * 86400 // step)
        (old_m, old_h), before = _timed(
            f"{label}: before (per-slot loop)", lambda e=epoch: _legacy_month_hour(e, tz)
        )
        old_hours, before2 = _timed(
            f"{label}: before, local hours", lambda e=epoch: _legacy_local_hours(e, tz)
        )
        (m, h), after = _timed(f"{label}: after (one lookup a day)", lambda e=epoch: local_month_hour(e, tz))
        hours, after2 = _timed(f"{label}: after, local hours", lambda e=epoch: local_fractional_hours(e, tz))
        assert np.array_equal(m, old_m) and np.array_equal(h, old_h) and np.allclose(hours, old_hours)
        print(f"{'':<70} {(before + before2) / (after + after2):8.0f} x faster, same answer")


def demo_feeder() -> None:
    from gridshare.planning import Study
    from gridshare.planning.yearrun import run_year

    print("\n-- demo feeder (30 sites, 19 dynamic), one year at 60-minute intervals")
    study = Study.load(demo_feeder_path(), year=2026)
    grid, _ = _timed("profiles for the year (built-in shapes)", study.first_grid)
    for rule in ("pro-rata", "lifo", "tranche"):
        _timed(f"one rule, one year: {rule}, as issued", lambda r=rule: run_year(grid, r), 2.0)
    _timed("one rule, one year: lifo, forecast-aware", lambda: run_year(grid, "lifo", "forecast-aware"), 2.0)
    result, _ = _timed(
        "the study: 2 rules x 2 behaviours + every figure",
        lambda: study.run(["pro-rata", "lifo"], ["as-issued", "forecast-aware"]),
    )
    totals = result.totals[result.totals["group"] == "dynamic sites"]
    for r in totals.itertuples():
        print(
            f"{'':<6}{r.rule:>9} {r.behaviour:<15} curtailed {r.energy_curtailed_mwh:8.1f} MWh "
            f"({r.curtailed_pct:.2f} %)"
        )
    tranche, _ = _timed(
        "tranche sizing at thermal:dt-21 (curve + bisection, 2.5 %)",
        lambda: study.tranche("thermal:dt-21", 2.5),
        30.0,
    )
    print(f"{'':<6}{len(tranche)} year runs; largest tranche {tranche['largest_kw'].iloc[0]:,.0f} kW")
    largest, _ = _timed(
        "largest new site at f1-a within 5 % (bisection)", lambda: study.largest_site("f1-a", 5.0), 30.0
    )
    print(f"{'':<6}{len(largest)} year runs; largest site {largest['largest_kw'].iloc[0]:,.0f} kW")


def envelopes_cli() -> None:
    print("\n-- gridshare envelopes compute, demo feeder, one year at 60-minute intervals, CSV")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "year.csv"
        args = ["envelopes", "compute", str(demo_feeder_path()), "--start", "2026-01-01T05:00:00Z",
                "--horizon", "365d", "--interval", "1h", "--out", str(out)]  # fmt: skip
        code = "from gridshare.cli import main; main()"
        command = [sys.executable, "-c", code, *args]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        rows = sum(1 for _ in out.open()) + sum(1 for _ in out.with_name("year.constraints.csv").open())
        label = "CLI, end to end (every site and constraint row to CSV)"
        print(f"{label:<66} {time.perf_counter() - t0:7.2f} s wall {cpu:7.2f} s cpu  ({rows:,} rows)")


def simbench(interval: str) -> None:
    from gridshare.planning import Study
    from gridshare.planning.acpass import ac_check
    from gridshare.planning.inputs import load_network, write_import_dir
    from gridshare.planning.yearrun import run_year

    code = "1-MV-rural--0-sw"
    print(f"\n-- SimBench {code}, one year at {interval} intervals")
    with tempfile.TemporaryDirectory() as tmp:
        loaded, _ = _timed(
            "import from the simbench wheel (grid + 2016 profiles)", lambda: load_network(f"simbench:{code}")
        )
        _timed("write the import directory (network.yaml, profiles.parquet, pandapower.json)",
               lambda: write_import_dir(loaded, Path(tmp) / "imp"))  # fmt: skip
        study, _ = _timed(
            "load the import directory", lambda: Study.load(Path(tmp) / "imp", interval=interval)
        )
        n_sites = len(study.sites)
        grid, _ = _timed("profiles on the study grid", study.first_grid)
        print(
            f"{'':<6}{n_sites} sites ({sum(s.agreement.flexible for s in study.sites)} dynamic), "
            f"{grid.n_intervals} intervals"
        )
        for rule in ("pro-rata", "lifo"):
            run, _ = _timed(f"one rule, one year: {rule}, as issued", lambda r=rule: run_year(grid, r), 15.0)
            lost = run.curtailed_w.sum() / max(run.generation_w.sum(), 1.0)
            print(f"{'':<6}dynamic sites curtailed {100 * lost:.2f} % of their energy")
        _timed(
            "one rule, one year: pro-rata, forecast-aware",
            lambda: run_year(grid, "pro-rata", "forecast-aware"),
            15.0,
        )
        hourly = Study.load(Path(tmp) / "imp", interval="1h")
        hgrid = hourly.first_grid()
        hrun = run_year(hgrid, "pro-rata")
        assert hourly.loaded.imported is not None
        check, _ = _timed("AC check: every hour of the year, exporting and importing",
                          lambda: ac_check(hourly.loaded.imported, hgrid, hrun))  # fmt: skip
        s = check.summary()
        print(
            f"{'':<6}{s['solves']:,} solves; intervals beyond a bound by > 1 %: "
            f"{s['intervals_with_violation']}; beyond at all: {s['intervals_beyond_a_bound_at_all']} "
            f"(largest excess {s['worst_excess_pct']} % of its bound); "
            f"highest V {s['highest_voltage_pu']} pu; worst loading {s['worst_loading_pct']} %; "
            f"vs pandapower.runpp: {s['cross_check_max_dv_pu']:.1e} pu"
        )
        tranche, _ = _timed("tranche sizing at the HV/MV transformer (hourly)",
                            lambda: hourly.tranche(f"thermal:{_hv_mv(hourly)}", 2.5))  # fmt: skip
        print(f"{'':<6}{len(tranche)} year runs; largest tranche {tranche['largest_kw'].iloc[0]:,.0f} kW")


def _hv_mv(study: Any) -> str:
    return next(b.name for b in study.network.branches if b.kind == "transformer")


def main() -> None:
    parser = argparse.ArgumentParser(description="planner study speed")
    parser.add_argument("--skip-simbench", action="store_true")
    parser.add_argument("--interval", default="15m", help="SimBench study interval")
    args = parser.parse_args()
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]} on {os.cpu_count()} cores")
    timezone_loops()
    demo_feeder()
    envelopes_cli()
    if not args.skip_simbench:
        simbench(args.interval)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (this process): {peak_mib:,.0f} MiB (target <= 2,048 MiB)")


if __name__ == "__main__":
    main()
