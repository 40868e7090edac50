"""The report's pictures (matplotlib, written as PNG): what a planner looks at first.

Four views: the most loaded constraints against their ratings over the day, envelope against actual
output for chosen sites, each site's curtailment as a share of its available PV energy, and the
fallback periods of the sites that lost communications. Times are local to the network.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from gridshare.sim.record import Recording

DPI = 110


def _times(times_s: np.ndarray, tz: str) -> list[datetime]:
    zone = ZoneInfo(tz)
    return [datetime.fromtimestamp(int(t), zone) for t in times_s]


def _time_axis(ax: Any, tz: str) -> None:
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(tz=ZoneInfo(tz), minticks=4, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=ZoneInfo(tz)))
    ax.grid(True, alpha=0.3)


def most_loaded(rec: Recording, count: int) -> list[int]:
    """Constraint columns by their highest loading as a share of the limit (voltage: of the band used).

    Steps a power flow did not solve are NaN and ignored; a constraint with no solved step ranks last.
    """
    scores = []
    for c, con in enumerate(rec.constraints):
        v = rec.value[:, c]
        v = v[np.isfinite(v)]
        if not len(v):
            scores.append(-np.inf)
        elif con.kind == "thermal":
            flow = v if con.direction == "export" else -v
            scores.append(float(flow.max()) / con.limit if con.limit else 0.0)
        else:
            # how close to the bound, relative to a 10 % band around 1 pu
            gap = (con.limit - v) if con.direction == "export" else (v - con.limit)
            scores.append(1.0 - float(gap.min()) / 0.1)
    return [int(i) for i in np.argsort(scores)[::-1][:count]]


def constraints_plot(rec: Recording, tz: str, path: Path, count: int = 6) -> Path:
    cols = most_loaded(rec, count)
    n = max(len(cols), 1)
    ncols = 2 if n > 1 else 1
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 2.6 * nrows), squeeze=False, sharex=True)
    when = _times(rec.times_s, tz)
    for ax, c in zip(axes.flat, cols, strict=False):
        con = rec.constraints[c]
        v = rec.value[:, c]
        over = (rec.excess[:, c] > 0) | (rec.excess_compliant[:, c] > 0)
        if con.kind == "thermal":
            flow_kw = (v if con.direction == "export" else -v) / 1000.0
            label = "reverse flow" if con.direction == "export" else "forward flow"
            ax.plot(when, flow_kw, lw=1.2, label=f"{label} (kW)")
            ax.axhline(
                con.limit / 1000.0, color="crimson", ls="--", lw=1, label=f"rating {con.limit / 1000:g} kW"
            )
            ax.set_ylabel("kW")
            ax.set_title(f"{con.asset}: {con.direction} thermal", fontsize=9)
        else:
            ax.plot(when, v, lw=1.2, label="voltage (pu)")
            bound = "v_max" if con.direction == "export" else "v_min"
            ax.axhline(con.limit, color="crimson", ls="--", lw=1, label=f"{bound} {con.limit:g} pu")
            ax.set_ylabel("pu")
            ax.set_title(f"{con.asset}: voltage ({bound})", fontsize=9)
        if over.any():
            ymin, ymax = ax.get_ylim()
            ax.fill_between(when, ymin, ymax, where=over, color="crimson", alpha=0.15, label="violated")
            ax.set_ylim(ymin, ymax)
        _time_axis(ax, tz)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    fig.suptitle("Most loaded constraints against their limits", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def sites_plot(rec: Recording, site_ids: list[str], tz: str, path: Path) -> Path:
    n = max(len(site_ids), 1)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.3 * n), squeeze=False, sharex=True)
    when = _times(rec.times_s, tz)
    for ax, site_id in zip(axes[:, 0], site_ids, strict=False):
        i = rec.site_ids.index(site_id)
        limit = rec.export_limit_w[:, i].astype(float)
        limit = np.where(np.isfinite(limit), limit, np.nan) / 1000.0
        ax.plot(when, rec.pv_available_w[:, i] / 1000.0, color="gold", lw=1, label="PV available")
        ax.step(when, limit, where="post", color="crimson", lw=1.2, label="export limit applied")
        ax.plot(when, rec.net_export_w[:, i] / 1000.0, color="navy", lw=1, label="net export (actual)")
        fb = rec.fallback[:, i]
        if fb.any():
            ymin, ymax = ax.get_ylim()
            ax.fill_between(when, ymin, ymax, where=fb, color="grey", alpha=0.25, label="fallback (default)")
            ax.set_ylim(ymin, ymax)
        ax.set_ylabel("kW")
        ax.set_title(site_id, fontsize=9)
        _time_axis(ax, tz)
        ax.legend(fontsize=7, loc="upper left", ncol=4)
    fig.suptitle("Envelope against actual output", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def curtailment_plot(per_site: list[dict[str, Any]], path: Path) -> Path:
    rows = sorted((r for r in per_site if r["pv_available_kwh"] > 0), key=lambda r: -r["curtailed_share"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(rows) + 2), 3.6))
    colours = ["tab:orange" if r["dynamic"] else "tab:blue" for r in rows]
    x = np.arange(len(rows))
    ax.bar(x, [100 * r["curtailed_share"] for r in rows], color=colours)
    for k, r in enumerate(rows):
        if r["non_compliant"]:
            ax.annotate(
                "x", (k, 100 * r["curtailed_share"]), ha="center", va="bottom", fontsize=7, color="red"
            )
    ax.set_xticks(x)
    ax.set_xticklabels([r["site"] for r in rows], rotation=90, fontsize=6 if len(rows) > 30 else 8)
    ax.set_ylabel("% of available PV energy")
    ax.set_title("Curtailment per site (orange: dynamic, blue: fixed; x: non-compliant)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def fallback_plot(
    per_site: list[dict[str, Any]], tz: str, start_s: int, end_s: int, timeout_s: float, path: Path
) -> Path | None:
    rows = [r for r in per_site if r["outages"] or r["fallback_periods"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(rows) + 1.6))
    zone = ZoneInfo(tz)

    def num(t: float) -> float:
        return mdates.date2num(datetime.fromtimestamp(t, zone))

    for k, r in enumerate(rows):
        for a, b in r["outages"]:
            ax.broken_barh([(num(a), num(b) - num(a))], (k - 0.4, 0.35), color="grey", alpha=0.6)
        for a, b in r["fallback_periods"]:
            b = end_s if b is None else b
            ax.broken_barh([(num(a), num(b) - num(a))], (k + 0.05, 0.35), color="crimson", alpha=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["site"] for r in rows], fontsize=7)
    ax.set_xlim(num(start_s), num(end_s))
    _time_axis(ax, tz)
    ax.set_title(
        f"Outages (grey) and fallback to the DefaultDERControl (red); timeout {timeout_s / 60:g} min",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def comparison_plot(table: list[dict[str, Any]], policies: list[str], path: Path) -> Path:
    rows = [r for r in table if any(r.get(p) for p in policies)] or table
    x = np.arange(len(rows))
    width = 0.8 / max(len(policies), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(rows) + 2), 3.8))
    for k, p in enumerate(policies):
        ax.bar(x + k * width, [100 * (r.get(p) or 0.0) for r in rows], width, label=p)
    ax.set_xticks(x + width * (len(policies) - 1) / 2)
    ax.set_xticklabels([r["site"] for r in rows], rotation=90, fontsize=6 if len(rows) > 30 else 8)
    ax.set_ylabel("% of available PV energy curtailed")
    ax.set_title("Curtailment per site under each allocation rule", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
