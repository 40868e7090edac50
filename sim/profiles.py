"""The fleet's own PV and load as a planner's profile table, so a study can rerun the same day.

`profiles.csv` beside a run's report has a `time` column (UTC) and, per site, `pv:<id>` and
`load:<id>`: what the site had available and its base load at each step, as shares of the
site's `pv_kw` and `load_kw` in the network file (the columns `gridshare plan run --profiles`
reads, docs/planning.md). Batteries and EV charging are not in it: a study has no storage model.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gridshare.sim.fleet import SimSite


def write_profiles(times_s: np.ndarray, sites: list[SimSite], path: Path) -> Path:
    """One row per step; shares rounded to 1e-6 (0.001 % of a site's peak)."""
    columns: list[tuple[str, np.ndarray]] = []
    for s in sites:
        if s.spec.pv_w > 0:
            columns.append((f"pv:{s.id}", s.pv_available_w / s.spec.pv_w))
        if s.spec.load_w > 0:
            columns.append((f"load:{s.id}", s.load_w / s.spec.load_w))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["time", *(name for name, _ in columns)])
        for k, t in enumerate(times_s):
            stamp = datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.writerow([stamp, *(f"{float(v[k]):.6f}" for _, v in columns)])
    return path
