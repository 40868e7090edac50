"""Run the same fleet under several allocation rules and set their curtailment side by side.

Each rule gets a full run of its own (same scenario, same seed, so the same weather, loads, fleet
and faults); only the server's `allocation_policy` differs. The table is per site: the share of its
available PV energy each rule curtailed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridshare.sim import plots
from gridshare.sim.report import to_html, to_markdown, write_report
from gridshare.sim.runner import ProgressFn, run_scenario
from gridshare.sim.scenario import Scenario

DEFAULT_POLICIES = ("pro-rata", "tranche", "lifo")


def compare(
    scenario: Scenario,
    out_dir: Path,
    work_dir: Path,
    policies: tuple[str, ...] = DEFAULT_POLICIES,
    progress_for: Callable[[str], ProgressFn | None] | None = None,
) -> dict[str, Any]:
    """One run and report per policy in `out_dir/<policy>/`, then `comparison.json` and a page."""
    results: dict[str, dict[str, Any]] = {}
    for policy in policies:
        run = scenario.model_copy(update={"policy": policy})
        run.base_dir = scenario.base_dir
        output = run_scenario(run, work_dir / policy, progress_for(policy) if progress_for else None)
        results[policy] = write_report(output, out_dir / policy)
    table = comparison_table(results, list(policies))
    summary = {
        policy: {
            "curtailed_kwh": f["totals"]["curtailed_kwh"],
            "curtailed_share": f["totals"]["curtailed_share"],
            "exported_kwh": f["totals"]["exported_kwh"],
            "gini": f["curtailment_distribution"]["gini"],
            "max_site_share": f["curtailment_distribution"]["max"],
            "violations": f["violations"]["count"],
            "violations_if_compliant": f["violations_if_compliant"]["count"],
            "curtailed_fallback_kwh": f["totals"]["curtailed_fallback_kwh"],
            "ramp_kwh": f["totals"]["ramp_kwh"],
            "engine": f["engine"],
            "validity": f["validity"],
        }
        for policy, f in results.items()
    }
    document = {"scenario": scenario.name, "policies": list(policies), "summary": summary, "per_site": table}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.json").write_text(json.dumps(document, indent=2))
    plots.comparison_plot(table, list(policies), out_dir / "comparison.png")
    blocks = [
        ("h1", f"Allocation rules compared: {scenario.name}"),
        (
            "p",
            "Same fleet, weather, loads and faults under each rule; one full run per rule (see its folder). "
            "Curtailment is PV held back by limits (the part by fallback limits is in each run's report); "
            "the inverters' soft ramp-up is not counted.",
        ),
        *[
            (
                "p",
                f"**{p}: NOT VALID.** "
                + " ".join(f"{x[0].upper()}{x[1:]}." for x in s["validity"]["problems"]),
            )
            for p, s in summary.items()
            if not s["validity"]["valid"]
        ],
        (
            "table",
            (
                [
                    "rule",
                    "curtailed kWh",
                    "curtailed share",
                    "exported kWh",
                    "Gini",
                    "worst site",
                    "violations",
                ],
                [
                    [
                        p,
                        s["curtailed_kwh"],
                        f"{100 * s['curtailed_share']:.2f} %",
                        s["exported_kwh"],
                        s["gini"],
                        f"{100 * s['max_site_share']:.1f} %",
                        s["violations"],
                    ]
                    for p, s in summary.items()
                ],
            ),
        ),
        ("img", ("curtailment per site under each rule", "comparison.png")),
        (
            "table",
            (
                ["site", "agreement", "queue"] + [f"{p} curtailed" for p in policies],
                [
                    [r["site"], r["agreement"], r["queue_position"]]
                    + [f"{100 * (r[p] or 0.0):.1f} %" for p in policies]
                    for r in table
                ],
            ),
        ),
    ]
    if scenario.report.format == "html":
        (out_dir / "comparison.html").write_text(to_html(blocks, f"GridShare comparison: {scenario.name}"))
    else:
        (out_dir / "comparison.md").write_text(to_markdown(blocks))
    return document


def comparison_table(results: dict[str, dict[str, Any]], policies: list[str]) -> list[dict[str, Any]]:
    """Per site: its agreement, queue position and curtailed share under each policy."""
    first = results[policies[0]]["per_site"]
    rows = []
    for i, site in enumerate(first):
        row: dict[str, Any] = {
            "site": site["site"],
            "agreement": site["agreement"],
            "queue_position": site.get("queue_position", i),
        }
        for p in policies:
            match = next((r for r in results[p]["per_site"] if r["site"] == site["site"]), None)
            row[p] = None if match is None else match["curtailed_share"]
        rows.append(row)
    return rows
