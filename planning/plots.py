"""The study's figures as PNGs (matplotlib, no display needed), each drawn from a result DataFrame.

Written for a reader who will not open the CSV: plain titles that say what is shown, units on
every axis, the target drawn where there is one, at most a handful of series per panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
COLOURS = ("#1f5aa6", "#d9822b", "#3c9d5d", "#b3362c", "#7b5ea7", "#6b6b6b")
DPI = 110


def _variant(rule: str, behaviour: str) -> str:
    return f"{rule}, {behaviour}"


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def curtailment_by_site(
    sites: pd.DataFrame, path: Path, highlight: Sequence[str] = (), limit: int = 12
) -> Path | None:
    """Share of each dynamic site's energy curtailed, one bar per rule and behaviour."""
    dyn = sites[sites["dynamic"]]
    if dyn.empty:
        return None
    first_year = dyn["year"].iloc[0]
    dyn = dyn[dyn["year"] == first_year]
    order = dyn.groupby("site_id")["curtailed_pct"].max().sort_values(ascending=False)
    order = order[(order > 0.05) | order.index.isin(list(highlight))]  # sites that lose something
    if order.empty:
        return None
    chosen = [s for s in highlight if s in order.index] + [s for s in order.index if s not in highlight]
    chosen = chosen[:limit]
    variants = list(dict.fromkeys(zip(dyn["rule"], dyn["behaviour"], strict=True)))
    fig, ax = plt.subplots(figsize=(9, min(0.22 * len(chosen) * max(len(variants), 1) + 1.6, 9.5)))
    height = 0.8 / max(len(variants), 1)
    y = np.arange(len(chosen))
    for k, (rule, behaviour) in enumerate(variants):
        part = dyn[(dyn["rule"] == rule) & (dyn["behaviour"] == behaviour)].set_index("site_id")
        values = [float(part["curtailed_pct"].get(s, 0.0)) for s in chosen]
        bars = ax.barh(
            y + k * height, values, height, label=_variant(rule, behaviour), color=COLOURS[k % len(COLOURS)]
        )
        ax.bar_label(bars, labels=[f"{v:.1f} %" if v >= 0.05 else "" for v in values], fontsize=7, padding=2)
    ax.set_yticks(y + height * (len(variants) - 1) / 2)
    ax.set_yticklabels([f"{s} *" if s in highlight else s for s in chosen])
    ax.invert_yaxis()
    ax.set_xlabel("energy curtailed over the year (% of the energy the site could have produced)")
    ax.set_xlim(right=max(ax.get_xlim()[1] * 1.08, 1.0))
    ax.set_title(
        f"Annual curtailment per dynamic site ({first_year})" + (" - * candidate" if highlight else "")
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def duration_curves(curve: pd.DataFrame, site: str, path: Path) -> Path | None:
    """Curtailed power against the hours a year it is at least that much, per rule and behaviour."""
    part = curve[curve["site_id"] == site]
    if part.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for k, ((rule, behaviour), group) in enumerate(part.groupby(["rule", "behaviour"], sort=False)):
        ax.step(
            group["hours"],
            group["curtailed_kw"],
            where="post",
            label=_variant(rule, behaviour),
            color=COLOURS[k % 6],
        )
    ax.set_xlabel("hours per year with at least this much curtailed")
    ax.set_ylabel("curtailed power (kW)")
    ax.set_title(f"Curtailment duration curve: {site}")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def heatmaps(heat: pd.DataFrame, site: str, path: Path) -> Path | None:
    """Curtailed energy by month and hour of day, one panel per rule and behaviour."""
    part = heat[heat["site_id"] == site]
    if part.empty:
        return None
    groups = list(part.groupby(["rule", "behaviour"], sort=False))[:4]
    vmax = float(part["curtailed_mwh"].max()) or 1.0
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 0.8, 3.9), squeeze=False)
    image = None
    for ax, ((rule, behaviour), group) in zip(axes[0], groups, strict=True):
        grid = np.zeros((12, 24))
        grid[group["month"].to_numpy() - 1, group["hour"].to_numpy()] = group["curtailed_mwh"].to_numpy()
        image = ax.imshow(grid, aspect="auto", cmap="YlOrRd", vmin=0, vmax=vmax, origin="upper")
        ax.set_title(f"{_variant(rule, behaviour)}\n{grid.sum():,.0f} MWh", fontsize=9)
        ax.set_yticks(range(12))
        ax.set_yticklabels(MONTHS, fontsize=7)
        ax.set_xticks(range(0, 24, 3))
        ax.set_xlabel("hour of day (local)")
    fig.suptitle(f"When {site} is curtailed (MWh per month and hour)", fontsize=11, y=1.06)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.85, label="MWh curtailed")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def constraint_hours(constraints: pd.DataFrame, path: Path, limit: int = 8) -> Path | None:
    """Hours each constraint curtails someone, per rule and behaviour (the most active ones)."""
    active = constraints[constraints["hours_curtailing"] > 0]
    if active.empty:
        return None
    top = active.groupby("constraint")["hours_curtailing"].max().sort_values(ascending=False).index[:limit]
    variants = list(dict.fromkeys(zip(active["rule"], active["behaviour"], strict=True)))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(top) * max(len(variants), 1) ** 0.5 + 1.6))
    height = 0.8 / max(len(variants), 1)
    y = np.arange(len(top))
    for k, (rule, behaviour) in enumerate(variants):
        part = active[(active["rule"] == rule) & (active["behaviour"] == behaviour)].set_index("constraint")
        hours = [float(part["hours_curtailing"].get(c, 0.0)) for c in top]
        bars = ax.barh(y + k * height, hours, height, label=_variant(rule, behaviour), color=COLOURS[k % 6])
        ax.bar_label(bars, labels=[f"{v:,.0f} h" if v > 0 else "" for v in hours], fontsize=7, padding=2)
    ax.set_yticks(y + height * (len(variants) - 1) / 2)
    ax.set_yticklabels(list(top))
    ax.invert_yaxis()
    ax.set_xlabel("hours per year binding while curtailing a site behind it")
    ax.set_xlim(right=ax.get_xlim()[1] * 1.1)
    ax.set_title("What limits the sites: constraints by hours of curtailment")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def sizing_curve(
    frame: pd.DataFrame, path: Path, title: str, series: Sequence[tuple[str, str]]
) -> Path | None:
    """Curtailment against size with the target and the answer marked (tranche or largest site)."""
    if frame is None or frame.empty:
        return None
    target = float(frame["target_pct"].iloc[0])
    answer = float(frame["largest_kw"].iloc[0])
    fig, ax = plt.subplots(figsize=(8, 4.2))
    data = frame.sort_values("size_kw")
    for k, (column, label) in enumerate(series):
        if column in data:
            ax.plot(data["size_kw"] / 1000, data[column], marker="o", ms=3, label=label, color=COLOURS[k])
    ax.axhline(target, color="#b3362c", ls="--", lw=1, label=f"target {target:g} %")
    ax.axvline(
        answer / 1000, color="#3c9d5d", ls=":", lw=1.2, label=f"largest at target: {answer / 1000:,.2f} MW"
    )
    ax.set_xlabel("size (MW)")
    ax.set_ylabel("energy curtailed over the year (%)")
    ax.set_title(title)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def event_lengths(events: pd.DataFrame, site: str, path: Path) -> Path | None:
    """How many curtailment events a year last at least x hours, per rule and behaviour."""
    part = events[events["site_id"] == site]
    if part.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for k, ((rule, behaviour), group) in enumerate(part.groupby(["rule", "behaviour"], sort=False)):
        lengths = np.sort(group["duration_h"].to_numpy())[::-1]
        ax.step(
            lengths,
            np.arange(1, len(lengths) + 1),
            where="post",
            label=_variant(rule, behaviour),
            color=COLOURS[k % 6],
        )
    ax.set_xlabel("event length (hours)")
    ax.set_ylabel("events per year at least this long")
    ax.set_title(f"Curtailment events: {site}")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
