"""A planning study: a network, candidate sites, profiles, rules and envelope behaviours -> frames.

The Python API a notebook uses and the CLI drives:

    from gridshare.planning import Study
    study = Study.load("demo", sites=["f2-d:5000"])          # or simbench:1-MV-rural--0-sw, a file
    result = study.run(rules=["pro-rata", "lifo"], behaviours=["as-issued", "forecast-aware"])
    result.sites        # per site, rule and behaviour: MWh available and curtailed, %, hours, events
    study.largest_site("f2-d", target_pct=5.0)               # a node's largest site at a target

Every figure is a pandas DataFrame; `report.write_report(study, result, out_dir)` makes the HTML
page, the plots and a CSV and Parquet file of each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gridshare.allocation.rules import POLICIES
from gridshare.grid.network import Network, Site
from gridshare.grid.units import W_PER_KW
from gridshare.planning import metrics
from gridshare.planning.candidates import Candidate, check_candidates, parse_inline, read_candidates
from gridshare.planning.errors import ProfileError, StudyError
from gridshare.planning.inputs import LoadedNetwork, load_network
from gridshare.planning.profiles import (
    ProfileTable,
    ProfileUse,
    bootstrap_days,
    local_year_start_s,
    read_profile_table,
    study_forecast,
    study_peaks,
    unknown_own_columns,
    whole_years,
)
from gridshare.planning.yearrun import BEHAVIOURS, StudyGrid, YearRun, run_year

#: (label of the current step, steps done, steps in total)
ProgressFn = Callable[[str, int, int], None]


def _quiet(label: str, done: int, total: int) -> None:
    return None


@dataclass
class StudyResult:
    """Every figure of a study as a DataFrame, plus the runs of the first year for plots."""

    sites: pd.DataFrame
    totals: pd.DataFrame
    percentiles: pd.DataFrame
    heatmap: pd.DataFrame
    duration_curve: pd.DataFrame
    events: pd.DataFrame
    attribution: pd.DataFrame
    constraints: pd.DataFrame
    runs: list[YearRun]
    assumptions: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)
    tranche: pd.DataFrame | None = None
    marginal: pd.DataFrame | None = None
    largest: pd.DataFrame | None = None
    ac: dict[str, Any] | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every non-empty figure by file name (the report writes each as CSV and Parquet)."""
        out = {
            "sites": self.sites,
            "totals": self.totals,
            "percentiles": self.percentiles,
            "heatmap": self.heatmap,
            "duration_curve": self.duration_curve,
            "events": self.events,
            "attribution": self.attribution,
            "constraints": self.constraints,
        }
        for name in ("tranche", "marginal", "largest"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.ac is not None and isinstance(self.ac.get("violations"), pd.DataFrame):
            out["ac_violations"] = self.ac["violations"]
        return {k: v for k, v in out.items() if v is not None and not v.empty}


@dataclass
class Study:
    """Network, sites (existing and candidate), profiles and the study grid's settings."""

    loaded: LoadedNetwork
    candidates: list[Candidate] = field(default_factory=list)
    profiles: ProfileTable | None = None
    interval_s: int | None = None
    year: int | None = None
    draws: int = 0
    seed: int = 1
    margin_fraction: float = 0.1

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        network: str | Path,
        *,
        profiles: str | Path | None = None,
        candidates: str | Path | None = None,
        sites: Sequence[str] = (),
        interval: str | int | None = None,
        year: int | None = None,
        draws: int = 0,
        seed: int = 1,
        margin_fraction: float = 0.1,
    ) -> Study:
        """Read every input; raises a PlanningError subclass naming file, field and line."""
        loaded = load_network(network)
        table = loaded.profiles
        if profiles is not None:
            table = read_profile_table(profiles, loaded.nf.network.timezone)
        queue_after = max((s.queue_position or 0 for s in loaded.nf.sites), default=-1) + 1
        chosen: list[Candidate] = []
        if candidates is not None:
            chosen += read_candidates(candidates, queue_after)
        chosen += parse_inline(sites, queue_after + len(chosen), start_index=len(chosen))
        check_candidates(chosen, loaded.nf.network, loaded.nf.sites, str(candidates or "--site"))
        interval_s = _interval_s(interval) if interval is not None else None
        if not 0 <= margin_fraction <= 1:
            raise StudyError(f"must be a share in [0, 1], got {margin_fraction}", None, "margin")
        return cls(loaded, chosen, table, interval_s, year, draws, seed, margin_fraction)

    @property
    def network(self) -> Network:
        return self.loaded.nf.network

    @property
    def sites(self) -> tuple[Site, ...]:
        return (*self.loaded.nf.sites, *(c.site for c in self.candidates))

    @property
    def technology(self) -> dict[str, str]:
        return {**self.loaded.technology, **{c.site.id: c.technology for c in self.candidates}}

    def with_sites(self, extra: Sequence[Candidate]) -> Study:
        return replace(self, candidates=[*self.candidates, *extra])

    # ------------------------------------------------------------------ grids
    def grids(self) -> Iterator[StudyGrid]:
        """The study's years (or draws): one StudyGrid each, built as needed (they are large)."""
        for label, start_s, n, interval_s, table in self._windows():
            yield self._grid(label, start_s, n, interval_s, table)[0]

    def first_grid(self) -> StudyGrid:
        label, start_s, n, interval_s, table = self._windows()[0]
        return self._grid(label, start_s, n, interval_s, table)[0]

    def _grid(
        self, label: str, start_s: int, n: int, interval_s: int, table: ProfileTable | None
    ) -> tuple[StudyGrid, ProfileUse]:
        network = self.network
        peaks = study_peaks(network, self.sites, self.technology)
        epoch = start_s + interval_s * np.arange(n, dtype=np.int64)
        on_grid = table.on_grid(start_s, n, interval_s) if table is not None else None
        if on_grid is not None:
            typos = unknown_own_columns(on_grid, peaks)
            if typos:
                raise ProfileError(
                    "names no site or node of the network", table.source if table else None, typos[0]
                )
        forecast, use = study_forecast(network, peaks, epoch, interval_s, on_grid)
        return StudyGrid(network, self.sites, forecast, epoch, interval_s, label), use

    def _windows(self) -> list[tuple[str, int, int, int, ProfileTable | None]]:
        tz = self.network.timezone
        table = self.profiles
        if table is None:
            interval_s = self.interval_s or 3600
            year = self.year or datetime.now(UTC).year
            start, end = local_year_start_s(year, tz), local_year_start_s(year + 1, tz)
            if self.draws:
                raise StudyError("draws resample a profile table; give --profiles", None, "draws")
            return [(str(year), start, (end - start) // interval_s, interval_s, None)]
        interval_s = self.interval_s or table.step_s
        years = whole_years(table, tz)
        if self.year is not None:
            years = [y for y in years if y[0] == self.year]
            if not years:
                raise ProfileError(f"does not cover the whole year {self.year}", table.source, "time")
        windows: list[tuple[str, int, int, int, ProfileTable | None]] = []
        if years:
            for year, start, n_steps in years:
                windows.append((str(year), start, n_steps * table.step_s // interval_s, interval_s, table))
        else:  # less than a calendar year: the whole span, in whole intervals
            n = (table.end_s - table.start_s) // interval_s
            if n < 1:
                raise ProfileError(f"is shorter than one {interval_s} s interval", table.source, "time")
            label = f"{_day(table.start_s, tz)} to {_day(table.start_s + n * interval_s - 1, tz)}"
            windows.append((label, table.start_s, n, interval_s, table))
        if self.draws:
            label, start, n, interval_s, _ = windows[0]
            windows = [
                (f"{label} draw {k + 1}", start, n, interval_s, draw)
                for k, draw in enumerate(bootstrap_days(table, tz, self.draws, self.seed))
            ]
        return windows

    # ------------------------------------------------------------------ the study
    def run(
        self,
        rules: Sequence[str] = ("pro-rata",),
        behaviours: Sequence[str] = ("as-issued",),
        progress: ProgressFn | None = None,
    ) -> StudyResult:
        """Every rule x behaviour on every year or draw; figures from all, plots from the first."""
        for rule in rules:
            if rule not in POLICIES:
                raise StudyError(f"unknown rule {rule!r} (choose from {', '.join(POLICIES)})", None, "rules")
        for behaviour in behaviours:
            if behaviour not in BEHAVIOURS:
                raise StudyError(
                    f"unknown behaviour {behaviour!r} ({', '.join(BEHAVIOURS)})", None, "behaviours"
                )
        progress = progress or _quiet
        windows = self._windows()
        total = len(windows) * len(rules) * len(behaviours)
        done = 0
        summaries, totals, first_runs = [], [], []
        timings: dict[str, float] = {"engine_s": 0.0, "grid_s": 0.0, "metrics_s": 0.0}
        use: ProfileUse | None = None
        for w, (label, start, n, interval_s, table) in enumerate(windows):
            t0 = time.perf_counter()
            grid, grid_use = self._grid(label, start, n, interval_s, table)
            use = use or grid_use
            timings["grid_s"] += time.perf_counter() - t0
            for rule in rules:
                for behaviour in behaviours:
                    progress(f"{label}: {rule}, {behaviour}", done, total)
                    run = run_year(grid, rule, behaviour, self.margin_fraction)
                    timings["engine_s"] += run.engine_s
                    t1 = time.perf_counter()
                    summaries.append(metrics.site_summary(run))
                    totals.append(metrics.totals(run))
                    timings["metrics_s"] += time.perf_counter() - t1
                    if w == 0:
                        first_runs.append(run)
                    done += 1
            del grid
        progress("figures", done, total)
        t1 = time.perf_counter()
        sites = pd.concat(summaries, ignore_index=True)
        result = StudyResult(
            sites=sites,
            totals=pd.concat(totals, ignore_index=True),
            percentiles=metrics.percentiles(sites) if len(windows) > 1 else pd.DataFrame(),
            heatmap=pd.concat([metrics.heatmap(r) for r in first_runs], ignore_index=True),
            duration_curve=pd.concat([metrics.duration_curve(r) for r in first_runs], ignore_index=True),
            events=pd.concat([metrics.events(r) for r in first_runs], ignore_index=True),
            attribution=pd.concat([metrics.attribution(r) for r in first_runs], ignore_index=True),
            constraints=pd.concat([metrics.constraint_hours(r) for r in first_runs], ignore_index=True),
            runs=first_runs,
            assumptions=self.assumptions(rules, behaviours, windows, use),
        )
        timings["metrics_s"] += time.perf_counter() - t1
        result.timings_s = timings
        progress("done", total, total)
        return result

    # ------------------------------------------------------------------ sizing (planning/sizing.py)
    def marginal(self, node: str, **kwargs: Any) -> pd.DataFrame:
        from gridshare.planning.sizing import marginal_curtailment

        return marginal_curtailment(self, node, **kwargs)

    def largest_site(self, node: str, target_pct: float = 5.0, **kwargs: Any) -> pd.DataFrame:
        from gridshare.planning.sizing import largest_site

        return largest_site(self, node, target_pct, **kwargs)

    def tranche(self, constraint: str, target_pct: float = 2.5, **kwargs: Any) -> pd.DataFrame:
        from gridshare.planning.sizing import tranche_curve

        return tranche_curve(self, constraint, target_pct, **kwargs)

    # ------------------------------------------------------------------ what the report must state
    def assumptions(
        self,
        rules: Sequence[str],
        behaviours: Sequence[str],
        windows: Sequence[tuple[str, int, int, int, ProfileTable | None]],
        use: ProfileUse | None,
    ) -> dict[str, Any]:
        net = self.network
        interval_s = windows[0][3] if windows else 0
        return {
            "network": net.name,
            "network_source": self.loaded.source,
            "network_version": self.loaded.version,
            "nodes": len(net.nodes),
            "branches": len(net.branches),
            "sites": len(self.sites),
            "dynamic_sites": sum(s.agreement.flexible for s in self.sites),
            "candidates": [
                {
                    "id": c.site.id,
                    "node": c.site.node,
                    "export_kw": c.site.max_export_w / W_PER_KW,  # the study summary's unit
                    "technology": c.technology,
                }
                for c in self.candidates
            ],
            "timezone": net.timezone,
            "power_factor": net.power_factor,
            "interval_s": interval_s,
            "periods": [w[0] for w in windows],
            "draws": self.draws,
            "rules": list(rules),
            "behaviours": list(behaviours),
            "margin_fraction": self.margin_fraction,
            "profiles": use.summary() if use is not None else [],
            "profile_source": self.profiles.source if self.profiles is not None else "built-in shapes",
            "import_notes": list(self.loaded.notes),
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _day(epoch_s: int, tz: str) -> str:
    from gridshare.grid.localtime import local_seconds

    local = int(local_seconds(np.array([epoch_s]), tz)[0])
    return datetime.fromtimestamp(local, UTC).strftime("%Y-%m-%d")


def _interval_s(value: str | int) -> int:
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip().lower()
        units = {"s": 1, "m": 60, "min": 60, "h": 3600}
        number = text.rstrip("minsh")
        unit = text[len(number) :] or "s"
        try:
            seconds = int(float(number) * units[unit])
        except (ValueError, KeyError):
            raise StudyError(
                f"{value!r} is not an interval (e.g. 15m, 30m, 1h, 900)", None, "interval"
            ) from None
    if seconds <= 0 or 86400 % seconds:
        raise StudyError(f"{seconds} s does not divide a day", None, "interval")
    return seconds
