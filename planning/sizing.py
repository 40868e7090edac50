"""Sizing by repeated year runs: the next MW at a node, the largest site at a target, the tranche curve.

Each answer comes from the same engine and year as the study, rerun with a candidate of a trial
size (queued after every existing site), so it includes how the candidate shares with everyone:

* marginal curtailment of the next MW at a node: how much of one more MW's energy the network
  curtails, counting what it takes from the sites already there (pro-rata spreads it);
* the largest site a node can take at a target annual curtailment (bisection on its size);
* a tranche at a constraint (the Ameren report's "Pro-Rata Tranches": how much DER a location can
  host within a target curtailment, studied at half of it for margin, e.g. 2.5 % for a 5 % offer):
  new capacity spread over the nodes behind the constraint, sharing pro-rata; the curve of its
  curtailment against its size, and the largest size whose members stay at or under the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gridshare.grid.agreements import Dynamic
from gridshare.grid.network import Site
from gridshare.grid.units import W_PER_KW
from gridshare.planning import metrics
from gridshare.planning.candidates import Candidate
from gridshare.planning.errors import StudyError
from gridshare.planning.yearrun import run_year

if TYPE_CHECKING:
    from gridshare.planning.study import Study

Progress = Callable[[str, int, int], None]
#: Bisection stops when the bracket is this share of the search range (or `tolerance_kw`).
BRACKET_SHARE = 0.02
MAX_STEPS = 14


def _candidate(
    study: Study, site_id: str, node: str, size_kw: float, technology: str, queue: int
) -> Candidate:
    site = Site(
        id=site_id,
        node=node,
        agreement=Dynamic(),
        max_export_w=size_kw * W_PER_KW,  # the planner searches in kW (its CSV and report's unit)
        max_import_w=0.0,
        queue_position=queue,
        pv_w=size_kw * W_PER_KW,
        load_w=0.0,
        load_profile="flat",
    )
    return Candidate(site, technology)


def _next_queue(study: Study) -> int:
    return max((s.queue_position or 0 for s in study.sites), default=-1) + 1


def _summary(study: Study, extra: Sequence[Candidate], rule: str, behaviour: str) -> pd.DataFrame:
    trial = study.with_sites(extra)
    grid = trial.first_grid()
    return metrics.site_summary(run_year(grid, rule, behaviour, study.margin_fraction))


def _check_node(study: Study, node: str) -> None:
    if node not in study.network.node_index:
        raise StudyError(f"unknown node {node!r}", None, "node")


def marginal_curtailment(
    study: Study,
    node: str,
    *,
    rule: str = "pro-rata",
    behaviour: str = "as-issued",
    technology: str = "pv",
    base_kw: float = 0.0,
    step_kw: float = 1000.0,
) -> pd.DataFrame:
    """Curtailment of the next `step_kw` at `node` after `base_kw` there, as a share of its energy."""
    _check_node(study, node)
    queue = _next_queue(study)
    rows: list[dict[str, Any]] = []
    results = []
    for size in (base_kw, base_kw + step_kw):
        extra = [_candidate(study, "next-mw", node, size, technology, queue)] if size > 0 else []
        summary = _summary(study, extra, rule, behaviour)
        results.append(summary)
        own = summary[summary["site_id"] == "next-mw"]
        rows.append(
            {
                "node": node,
                "rule": rule,
                "behaviour": behaviour,
                "size_kw": size,
                "candidate_available_mwh": float(own["energy_available_mwh"].sum()),
                "candidate_curtailed_mwh": float(own["energy_curtailed_mwh"].sum()),
                "candidate_curtailed_pct": float(own["curtailed_pct"].sum()) if len(own) else 0.0,
                "all_sites_curtailed_mwh": float(summary["energy_curtailed_mwh"].sum()),
            }
        )
    added = float(rows[1]["candidate_available_mwh"]) - float(rows[0]["candidate_available_mwh"])
    lost = float(rows[1]["all_sites_curtailed_mwh"]) - float(rows[0]["all_sites_curtailed_mwh"])
    own_lost = float(rows[1]["candidate_curtailed_mwh"]) - float(rows[0]["candidate_curtailed_mwh"])
    frame = pd.DataFrame(rows)
    frame["marginal_curtailed_pct"] = [np.nan, 100.0 * lost / added if added > 0 else np.nan]
    frame["marginal_own_curtailed_pct"] = [np.nan, 100.0 * own_lost / added if added > 0 else np.nan]
    return frame


def _path_ratings_kw(study: Study, node: str) -> list[float]:
    """Export ratings (kW, the planner's search unit) of the branches between `node` and the source."""
    net = study.network
    topo = net.topology
    k = topo.node_index[node]
    return [
        float(b.rating.export_w) / W_PER_KW
        for i, b in enumerate(net.branches)
        if b.rating is not None and b.rating.export_w is not None and topo.on_path[i, k]
    ]


def _default_max_kw(study: Study, nodes: Sequence[str]) -> float:
    """Twice the tightest export rating between these nodes and the source (10 MW if none is rated)."""
    ratings = [r for n in nodes for r in _path_ratings_kw(study, n)]
    return 2.0 * min(ratings) if ratings else 10_000.0


def largest_site(
    study: Study,
    node: str,
    target_pct: float,
    *,
    rule: str = "pro-rata",
    behaviour: str = "as-issued",
    technology: str = "pv",
    max_kw: float | None = None,
    tolerance_kw: float | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Trial sizes and their curtailment; `largest_kw` (same on every row) is the answer."""
    _check_node(study, node)
    if not 0 < target_pct < 100:
        raise StudyError(f"must be a percentage in (0, 100), got {target_pct}", None, "target")
    hi = max_kw or _default_max_kw(study, [node])
    tol = tolerance_kw or max(hi * BRACKET_SHARE, 1.0)
    queue = _next_queue(study)
    tried: list[dict[str, float]] = []

    def pct(size: float) -> float:
        summary = _summary(
            study, [_candidate(study, "candidate", node, size, technology, queue)], rule, behaviour
        )
        own = summary[summary["site_id"] == "candidate"].iloc[0]
        tried.append(
            {
                "size_kw": size,
                "curtailed_pct": float(own["curtailed_pct"]),
                "curtailed_mwh": float(own["energy_curtailed_mwh"]),
            }
        )
        if progress is not None:
            progress(f"largest site at {node}: {size:,.0f} kW", len(tried), MAX_STEPS + 1)
        return float(own["curtailed_pct"])

    lo = 0.0
    if pct(hi) <= target_pct:
        lo = hi  # even the search ceiling meets the target
    else:
        for _ in range(MAX_STEPS):
            if hi - lo <= tol:
                break
            mid = (lo + hi) / 2
            if pct(mid) <= target_pct:
                lo = mid
            else:
                hi = mid
    frame = pd.DataFrame(tried).sort_values("size_kw", ignore_index=True)
    frame.insert(0, "node", node)
    frame.insert(1, "rule", rule)
    frame.insert(2, "behaviour", behaviour)
    frame["target_pct"] = target_pct
    frame["largest_kw"] = lo
    return frame


def constraint_nodes(study: Study, constraint: str) -> list[str]:
    """Nodes whose export a constraint limits: below a rated branch, or sharing a path with a bus."""
    net = study.network
    kind, _, asset = constraint.partition(":")
    topo = net.topology
    if kind == "thermal":
        names = [b.name for b in net.branches]
        if asset not in names:
            raise StudyError(f"no branch {asset!r}", None, "constraint")
        return list(net.downstream_nodes(asset))
    if kind == "voltage":
        if asset not in topo.node_index:
            raise StudyError(f"no node {asset!r}", None, "constraint")
        return [asset]
    raise StudyError(f"{constraint!r}: write thermal:<branch> or voltage:<node>", None, "constraint")


def _tranche_max_kw(study: Study, constraint: str, members: Sequence[str]) -> float:
    """Three times the constraint's own export rating (thermal), else as for one site."""
    kind, _, asset = constraint.partition(":")
    if kind == "thermal":
        branch = next(b for b in study.network.branches if b.name == asset)
        if branch.rating is not None and branch.rating.export_w is not None:
            return 3.0 * float(branch.rating.export_w) / W_PER_KW
    return _default_max_kw(study, members)


def tranche_curve(
    study: Study,
    constraint: str,
    target_pct: float,
    *,
    technology: str = "pv",
    nodes: Sequence[str] | None = None,
    sizes_kw: Sequence[float] | None = None,
    max_kw: float | None = None,
    behaviour: str = "as-issued",
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Tranche members' curtailment against the tranche's size, and the largest size at the target.

    The tranche is new capacity spread evenly over `nodes` (default: every node behind the
    constraint that is not the source), sharing pro-rata with the dynamic sites already there.
    Columns: size_kw, curtailed_pct (all members' energy together), worst_member_pct, and
    largest_kw (same on every row: the largest size whose members together stay at the target).
    """
    if not 0 < target_pct < 100:
        raise StudyError(f"must be a percentage in (0, 100), got {target_pct}", None, "target")
    members = list(nodes) if nodes else constraint_nodes(study, constraint)
    members = [n for n in members if n != study.network.root_name]
    if not members:
        raise StudyError(f"{constraint}: no node behind it to place a tranche", None, "constraint")
    for n in members:
        _check_node(study, n)
    hi = max_kw or _tranche_max_kw(study, constraint, members)
    queue = _next_queue(study)
    rows: dict[float, dict[str, float]] = {}

    def evaluate(size: float) -> float:
        if size in rows:
            return rows[size]["curtailed_pct"]
        share = size / len(members)
        extra = [
            _candidate(study, f"tranche-{i + 1}", n, share, technology, queue + i)
            for i, n in enumerate(members)
        ]
        summary = _summary(study, extra, "pro-rata", behaviour)
        own = summary[summary["site_id"].str.startswith("tranche-")]
        available = float(own["energy_available_mwh"].sum())
        lost = float(own["energy_curtailed_mwh"].sum())
        rows[size] = {
            "size_kw": size,
            "curtailed_pct": 100.0 * lost / available if available > 0 else 0.0,
            "worst_member_pct": float(own["curtailed_pct"].max()),
            "curtailed_mwh": lost,
        }
        if progress is not None:
            progress(f"tranche at {constraint}: {size:,.0f} kW", len(rows), MAX_STEPS + 10)
        return rows[size]["curtailed_pct"]

    for size in sizes_kw if sizes_kw is not None else np.linspace(hi / 6, hi, 6):
        evaluate(float(size))
    feasible = [s for s, r in rows.items() if r["curtailed_pct"] <= target_pct]
    infeasible = [s for s, r in rows.items() if r["curtailed_pct"] > target_pct]
    lo_bound = max(feasible, default=0.0)
    hi_bound = min((s for s in infeasible if s > lo_bound), default=hi)
    if not infeasible:
        lo_bound = hi_bound = hi
    tol = max(hi * BRACKET_SHARE, 1.0)
    for _ in range(MAX_STEPS):
        if hi_bound - lo_bound <= tol:
            break
        mid = (lo_bound + hi_bound) / 2
        if evaluate(mid) <= target_pct:
            lo_bound = mid
        else:
            hi_bound = mid
    frame = pd.DataFrame(sorted(rows.values(), key=lambda r: r["size_kw"]))
    frame.insert(0, "constraint", constraint)
    frame["members"] = len(members)
    frame["target_pct"] = target_pct
    frame["largest_kw"] = lo_bound
    return frame


__all__ = ["constraint_nodes", "largest_site", "marginal_curtailment", "tranche_curve"]
