"""What a year of envelopes means for each site: energy, hours, events, when, and why.

Every function takes a `YearRun` and returns a pandas DataFrame (tidy: one row per observation),
so a notebook, the report and the CSV/Parquet files all read the same numbers.

* Curtailment: generation the export envelope refused (after the site's own load), as MWh and as a
  share of the energy available (the site's generation over the period).
* Hours curtailed and events: intervals with curtailment above 0.01 % of the site's size; an event
  is a run of consecutive such intervals.
* Attribution: in each curtailed interval, the export constraints binding there that the site loads
  share its curtailment equally; with none binding it is its agreement (a fixed site's limit, a
  dynamic site's cap) or, forecast-aware, its forecast cap.
* Constraint hours: hours a constraint binds in the envelopes, and hours it binds while curtailing
  a site behind it (as issued, agreed capacities can exceed a rating all year: only the second is
  lost energy).
* P10 / P50 / P90: the 10th, 50th and 90th percentiles of the annual figure across profile years or
  draws (P90: nine years in ten curtail no more than this).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from gridshare.grid.localtime import utc_offsets_s
from gridshare.grid.units import W_PER_KW
from gridshare.planning.yearrun import EVENT_SHARE, YearRun

WH_PER_MWH = 1e6


def _keys(run: YearRun) -> dict[str, Any]:
    return {"year": run.label, "rule": run.rule, "behaviour": run.behaviour}


def _threshold_w(run: YearRun) -> np.ndarray:
    return np.maximum(run.size_w * EVENT_SHARE, 1.0)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of runs of True in a 1-d boolean array."""
    padded = np.r_[False, mask, False].astype(np.int8)
    change = np.diff(padded)
    starts = np.flatnonzero(change == 1)
    ends = np.flatnonzero(change == -1)
    return starts, ends - starts


def site_summary(run: YearRun) -> pd.DataFrame:
    """One row per site: available, curtailed, hours, events, peak; import refused for loads."""
    h = run.interval_h
    curtailed = run.curtailed_w
    imp_refused = run.import_curtailed_w
    on = curtailed > _threshold_w(run)[None, :]
    available = run.generation_w.sum(axis=0) * h / WH_PER_MWH
    lost = curtailed.sum(axis=0) * h / WH_PER_MWH
    import_wanted = np.clip(run.load_w - run.generation_w, 0.0, None).sum(axis=0) * h / WH_PER_MWH
    rows = []
    for s, site_id in enumerate(run.site_ids):
        _, lengths = _runs(on[:, s])
        lengths_h = lengths * h
        rows.append(
            {
                **_keys(run),
                "site_id": site_id,
                "node": run.site_nodes[s],
                "dynamic": bool(run.flexible[s]),
                "size_kw": float(run.size_w[s]) / W_PER_KW,  # the CSV's unit
                "energy_available_mwh": float(available[s]),
                "energy_curtailed_mwh": float(lost[s]),
                "curtailed_pct": float(100.0 * lost[s] / available[s]) if available[s] > 0 else 0.0,
                "hours_curtailed": float(on[:, s].sum() * h),
                "events": len(lengths),
                "mean_event_h": float(lengths_h.mean()) if len(lengths) else 0.0,
                "longest_event_h": float(lengths_h.max()) if len(lengths) else 0.0,
                "peak_curtailed_kw": float(curtailed[:, s].max() / W_PER_KW) if len(curtailed) else 0.0,
                "import_wanted_mwh": float(import_wanted[s]),
                "import_refused_mwh": float(imp_refused[:, s].sum() * h / WH_PER_MWH),
            }
        )
    return pd.DataFrame(rows)


def totals(run: YearRun) -> pd.DataFrame:
    """Dynamic sites together and every site together: available, curtailed, share."""
    h = run.interval_h
    curtailed = run.curtailed_w.sum(axis=0) * h / WH_PER_MWH
    available = run.generation_w.sum(axis=0) * h / WH_PER_MWH
    rows = []
    for group, mask in (("dynamic sites", run.flexible), ("all sites", np.ones_like(run.flexible))):
        a, c = float(available[mask].sum()), float(curtailed[mask].sum())
        rows.append(
            {
                **_keys(run),
                "group": group,
                "sites": int(mask.sum()),
                "energy_available_mwh": a,
                "energy_curtailed_mwh": c,
                "curtailed_pct": 100.0 * c / a if a > 0 else 0.0,
                "infeasible_intervals": run.infeasible_intervals,
            }
        )
    return pd.DataFrame(rows)


def events(run: YearRun, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Every curtailment event: site, local start, duration and energy."""
    h = run.interval_h
    curtailed = run.curtailed_w
    on = curtailed > _threshold_w(run)[None, :]
    wanted = set(sites) if sites is not None else None
    local = run.epoch_s + _local_offsets(run)
    parts = []
    for s, site_id in enumerate(run.site_ids):
        if wanted is not None and site_id not in wanted:
            continue
        starts, lengths = _runs(on[:, s])
        if not len(starts):
            continue
        cumulative = np.r_[0.0, np.cumsum(curtailed[:, s])]
        energy = cumulative[starts + lengths] - cumulative[starts]
        parts.append(
            pd.DataFrame(
                {
                    "site_id": site_id,
                    "start_local": np.datetime_as_string(local[starts].astype("datetime64[s]"), unit="m"),
                    "duration_h": lengths * h,
                    "energy_mwh": energy * h / WH_PER_MWH,
                }
            )
        )
    columns = ["site_id", "start_local", "duration_h", "energy_mwh"]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    for key, value in reversed(list(_keys(run).items())):
        frame.insert(0, key, value)
    return frame


def _local_offsets(run: YearRun) -> np.ndarray:
    return utc_offsets_s(run.epoch_s, run.timezone)


def duration_curve(run: YearRun, points: int = 400) -> pd.DataFrame:
    """Curtailed power sorted from the largest: how many hours a year at least this much is lost.

    Sampled at up to `points` ranks per site (spread over the curtailed hours), for plots and files;
    the exact curve is the sorted `curtailed_w` of the run.
    """
    h = run.interval_h
    ordered = -np.sort(-run.curtailed_w, axis=0)
    parts = []
    for s, site_id in enumerate(run.site_ids):
        nonzero = int((ordered[:, s] > 0).sum())
        if nonzero == 0:
            continue
        ranks = np.unique(np.linspace(0, nonzero - 1, min(points, nonzero)).astype(int))
        parts.append(
            pd.DataFrame(
                {"site_id": site_id, "hours": (ranks + 1) * h, "curtailed_kw": ordered[ranks, s] / W_PER_KW}
            )
        )
    columns = ["site_id", "hours", "curtailed_kw"]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    for key, value in reversed(list(_keys(run).items())):
        frame.insert(0, key, value)
    return frame


def heatmap(run: YearRun) -> pd.DataFrame:
    """Curtailed MWh per local month and hour of day, per site and for all dynamic sites together."""
    curtailed = run.curtailed_w * run.interval_h / WH_PER_MWH
    cell = (run.month - 1) * 24 + run.hour
    per_site = np.zeros((288, len(run.site_ids) + 1))
    np.add.at(per_site[:, :-1], cell, curtailed)
    per_site[:, -1] = per_site[:, :-1][:, run.flexible].sum(axis=1)
    names = np.array([*run.site_ids, "all dynamic sites"], dtype=object)
    keep = per_site.any(axis=0)
    values = per_site[:, keep]
    n = values.shape[1]
    frame = pd.DataFrame(
        {
            "site_id": np.repeat(names[keep], 288),
            "month": np.tile(np.arange(288) // 24 + 1, n),
            "hour": np.tile(np.arange(288) % 24, n),
            "curtailed_mwh": values.T.ravel(),
        }
    )
    for key, value in reversed(list(_keys(run).items())):
        frame.insert(0, key, value)
    return frame


def attribution(run: YearRun) -> pd.DataFrame:
    """Which constraint (or agreement) each site's curtailed energy is owed to, and its share."""
    h = run.interval_h
    curtailed = run.curtailed_w
    binding = run.binding.astype(np.float64)
    loads = run.site_loads.astype(np.float64)
    count = binding @ loads.T  # (T, n) binding constraints each site is limited by
    by_cause: dict[str, np.ndarray] = {}
    shared = np.divide(curtailed, count, out=np.zeros_like(curtailed), where=count > 0)
    for c in np.flatnonzero(binding.any(axis=0)):
        energy = (shared * (binding[:, c][:, None] * loads[:, c][None, :])).sum(axis=0)
        if energy.any():
            by_cause[run.constraint_names[c]] = energy
    unexplained = np.where(count > 0, 0.0, curtailed)
    own = "agreement or forecast cap" if run.behaviour == "forecast-aware" else "agreement"
    by_cause[own] = unexplained.sum(axis=0)
    total = curtailed.sum(axis=0)
    rows = []
    for cause, energy in by_cause.items():
        for s, site_id in enumerate(run.site_ids):
            if energy[s] <= 0:
                continue
            rows.append(
                {
                    **_keys(run),
                    "site_id": site_id,
                    "cause": cause,
                    "curtailed_mwh": float(energy[s] * h / WH_PER_MWH),
                    "share_pct": float(100.0 * energy[s] / total[s]) if total[s] > 0 else 0.0,
                }
            )
    return pd.DataFrame(rows, columns=[*_keys(run), "site_id", "cause", "curtailed_mwh", "share_pct"])


def constraint_hours(run: YearRun) -> pd.DataFrame:
    """Per export constraint: hours binding, hours binding while curtailing a site behind it, MWh owed."""
    h = run.interval_h
    curtailing = (run.curtailed_w > _threshold_w(run)[None, :]) & run.flexible[None, :]
    behind = curtailing.astype(np.float64) @ run.site_loads.astype(np.float64)  # (T, c)
    attributed = attribution(run)
    owed = attributed.groupby("cause")["curtailed_mwh"].sum() if len(attributed) else pd.Series(dtype=float)
    rows = []
    for c, name in enumerate(run.constraint_names):
        binds = run.binding[:, c]
        rows.append(
            {
                **_keys(run),
                "constraint": name,
                "hours_binding": float(binds.sum() * h),
                "hours_curtailing": float((binds & (behind[:, c] > 0)).sum() * h),
                "curtailed_mwh": float(owed.get(name, 0.0)),
            }
        )
    frame = pd.DataFrame(
        rows, columns=[*_keys(run), "constraint", "hours_binding", "hours_curtailing", "curtailed_mwh"]
    )
    return frame.sort_values(["hours_curtailing", "hours_binding"], ascending=False, ignore_index=True)


def percentiles(summaries: pd.DataFrame) -> pd.DataFrame:
    """P10 / P50 / P90 of each site's annual curtailment across the years or draws in `summaries`."""
    if summaries.empty:
        return pd.DataFrame()
    grouped = summaries.groupby(["rule", "behaviour", "site_id"], sort=False)
    out = grouped.agg(
        years=("year", "nunique"),
        curtailed_pct_p10=("curtailed_pct", lambda x: float(np.percentile(x, 10))),
        curtailed_pct_p50=("curtailed_pct", lambda x: float(np.percentile(x, 50))),
        curtailed_pct_p90=("curtailed_pct", lambda x: float(np.percentile(x, 90))),
        curtailed_mwh_p10=("energy_curtailed_mwh", lambda x: float(np.percentile(x, 10))),
        curtailed_mwh_p50=("energy_curtailed_mwh", lambda x: float(np.percentile(x, 50))),
        curtailed_mwh_p90=("energy_curtailed_mwh", lambda x: float(np.percentile(x, 90))),
    )
    return out.reset_index()
