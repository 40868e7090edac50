"""Write a run's report: `figures.json`, the plots, and a Markdown or HTML page that ties them together.

The page is built once as blocks (headings, paragraphs, tables, images) and rendered to either
format, so the two never disagree. Times are shown in the network's local time.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gridshare.sim import plots
from gridshare.sim.figures import figures
from gridshare.sim.profiles import write_profiles
from gridshare.sim.runner import RunOutput

Block = tuple[str, Any]  # ("h2", text) | ("p", text) | ("table", (header, rows)) | ("img", (alt, file))


def local(t_s: float | None, tz: str, with_date: bool = False) -> str:
    if t_s is None:
        return "-"
    return datetime.fromtimestamp(t_s, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def chosen_sites(out: RunOutput, count: int = 4) -> list[str]:
    """Sites to plot when the scenario names none: the two most curtailed, a faulted, a non-compliant."""
    wanted = [s for s in out.scenario.report.sites if s in out.recording.site_ids]
    if wanted:
        return wanted
    rec = out.recording
    curtailed = (rec.pv_available_w - rec.pv_w).sum(axis=0)
    picks = [rec.site_ids[int(i)] for i in curtailed.argsort()[::-1][:2]]
    faulted = [s for s in out.outages if s not in picks]
    picks += faulted[:1]
    non_compliant = [s.id for s in out.sites if s.non_compliant and s.id not in picks]
    picks += non_compliant[:1]
    return picks[:count]


def write_report(out: RunOutput, out_dir: Path) -> dict[str, Any]:
    """Write everything into `out_dir`; returns the figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = figures(out)
    (out_dir / "figures.json").write_text(json.dumps(figs, indent=2))
    write_profiles(out.recording.times_s, out.sites, out_dir / "profiles.csv")
    tz = out.network.network.timezone
    images = {
        "constraints": plots.constraints_plot(
            out.recording, tz, out_dir / "constraints.png", out.scenario.report.constraints
        ),
        "sites": plots.sites_plot(out.recording, chosen_sites(out), tz, out_dir / "sites.png"),
        "curtailment": plots.curtailment_plot(figs["per_site"], out_dir / "curtailment.png"),
        "fallback": plots.fallback_plot(
            figs["per_site"],
            tz,
            out.start_s,
            out.end_s,
            out.scenario.fleet.fallback_timeout_s,
            out_dir / "fallback.png",
        ),
    }
    blocks = page_blocks(figs, tz, {k: v.name for k, v in images.items() if v is not None})
    if out.scenario.report.format == "html":
        (out_dir / "report.html").write_text(to_html(blocks, f"GridShare simulation: {figs['scenario']}"))
    else:
        (out_dir / "report.md").write_text(to_markdown(blocks))
    return figs


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _powerflow_sentence(f: dict[str, Any]) -> str:
    """Which model counted violations: with AC, what the linear one misses is its linearisation error."""
    if f.get("powerflow") != "ac":
        return "The network is solved with the engine's linear model."
    cost = f["run"].get("powerflow") or {}
    given = f.get("powerflow_network") or {}
    if given.get("source") == "pandapower":
        background = (
            "the engine's background forecast in place of the file's own loads and generation"
            if given["background"] == "engine"
            else "the file's own loads and generation as background"
        )
        text = (
            f"The fleet's behaviour is checked by AC power flow (pandapower) on the given pandapower "
            f"network **{given['file']}** ({given['buses']} buses, {given['lines']} lines, "
            f"{given['trafos']} transformers; {given['constraints']} constraints from its own element "
            f"ratings), with {background}; the envelopes were planned on the engine's network"
        )
        fallback = "those steps are left out: nothing is counted for them"
    else:
        text = (
            "The network is solved by AC power flow (pandapower) from the recorded behaviour, losses and "
            "nonlinearity included"
        )
        fallback = "linear model used"
    if cost:
        text += f": {cost['solves']} solves, {cost['mean_ms']} ms each"
        if cost["not_converged"]:
            text += f", {cost['not_converged']} did not converge ({fallback})"
    return text + "."


def _linear_row(vl: dict[str, Any] | None, given: bool = False) -> list[list[Any]]:
    """AC runs: the engine's linear model on the same behaviour; what it misses is its linearisation error.

    With a given pandapower network the two count different constraints (its elements against the
    engine's branches), so the row is the engine's own view, not a measure of linearisation error.
    """
    if vl is None:
        return []
    label = (
        "violations on the engine's own network (linear model, its constraints; as run)"
        if given
        else "violations the engine's linear model sees (as run)"
    )
    return [
        [
            label,
            f"{vl['count']} events, worst {vl['worst_kw']} kW / {vl['worst_pu']} pu, "
            f"{vl['duration_s'] / 60:g} min",
        ]
    ]


def page_blocks(f: dict[str, Any], tz: str, images: dict[str, str]) -> list[Block]:
    t, v, vc = f["totals"], f["violations"], f["violations_if_compliant"]
    run, srv = f["run"], f["server"]
    blocks: list[Block] = [("h1", f"Simulation: {f['scenario']}"), *validity_blocks(f)]
    blocks += [
        (
            "p",
            f"Network **{f['network']}**, {f['sites']} sites, allocation **{f['policy']}**, "
            f"{local(f['start_s'], tz, True)} to {local(f['end_s'], tz, True)} ({tz}) "
            f"in {f['step_s']} s steps; {run['clock']} clock x{run['factor']:g}: {run['wall_s']} s wall "
            f"after {run['setup_wall_s']} s of setup, worst lag {run['max_lag_s']} s simulated. "
            + _powerflow_sentence(f),
        ),
        ("h2", "Summary"),
        (
            "table",
            (
                ["figure", "value"],
                [
                    ["energy exported (kWh)", t["exported_kwh"]],
                    ["energy imported (kWh)", t["imported_kwh"]],
                    ["PV energy available (kWh)", t["pv_available_kwh"]],
                    [
                        "PV energy curtailed by limits (kWh)",
                        f"{t['curtailed_kwh']}: {t['curtailed_envelopes_kwh']} by the engine's envelopes, "
                        f"{t['curtailed_fallback_kwh']} by fallback limits",
                    ],
                    ["curtailed share of available", f"{100 * t['curtailed_share']:.2f} %"],
                    ["PV held back by the soft ramp-up (kWh, not curtailment)", t["ramp_kwh"]],
                    ["envelope recomputations", _engine_cell(f.get("engine") or {})],
                    ["EV charging deferred (kWh)", t["ev_deferred_kwh"]],
                    [
                        "constraint violations (as run)",
                        f"{v['count']} events, worst {v['worst_kw']} kW / "
                        f"{v['worst_pu']} pu, {v['duration_s'] / 60:g} min in total",
                    ],
                    [
                        "violations had every site complied",
                        f"{vc['count']} events, worst {vc['worst_kw']} kW / "
                        f"{vc['worst_pu']} pu, {vc['duration_s'] / 60:g} min",
                    ],
                    *_linear_row(
                        f.get("violations_linear"),
                        (f.get("powerflow_network") or {}).get("source") == "pandapower",
                    ),
                    ["mean compliance", f"{100 * f['compliance']['mean']:.2f} %"],
                    ["non-compliant sites", f["compliance"]["non_compliant_sites"]],
                    ["time in fallback (site-hours)", f["fallback"]["site_hours"]],
                    [
                        "requests (p50 / p99 ms as seen by the fleet)",
                        f"{sum(srv['requests'].values())} ({srv['p50_ms']} / {srv['p99_ms']})",
                    ],
                ],
            ),
        ),
        ("h2", "Curtailment"),
        (
            "p",
            "Curtailment is PV held back by a limit: the engine's envelopes, or fallback limits "
            "(fallback-valued envelopes the server published when a recomputation failed, or the "
            "DefaultDERControl of a device out of contact), counted apart per site. PV held back by the "
            "inverters' soft ramp-up (at the start of the run and after a limit rises) is not curtailment "
            "and is shown on its own.",
        ),
        (
            "p",
            "Distribution of curtailment across sites with PV (share of each site's available energy): "
            + ", ".join(
                f"{k} {100 * x:.1f} %" for k, x in f["curtailment_distribution"].items() if k != "gini"
            )
            + f"; Gini {f['curtailment_distribution']['gini']}.",
        ),
    ]
    if "curtailment" in images:
        blocks.append(("img", ("curtailment per site", images["curtailment"])))
    blocks += [("h2", "Constraints"), ("img", ("constraint loading", images["constraints"]))]
    events = v["events"][:20]
    if events:
        blocks.append(
            (
                "table",
                (
                    ["constraint", "from", "minutes", "worst"],
                    [
                        [
                            e["constraint"],
                            local(e["from_s"], tz),
                            e["duration_s"] / 60,
                            f"{e['worst']} {e['unit']}",
                        ]
                        for e in events
                    ],
                ),
            )
        )
    else:
        blocks.append(("p", "No constraint was exceeded."))
    blocks += [("h2", "Envelope against actual"), ("img", ("envelope against actual", images["sites"]))]
    faults = f["fallback"]["faults"]
    blocks.append(("h2", "Communications faults and fallback"))
    if faults:
        if "fallback" in images:
            blocks.append(("img", ("fallback periods", images["fallback"])))
        blocks.append(
            (
                "table",
                (
                    [
                        "site",
                        "outage",
                        "fell back after (min)",
                        "resumed after outage end (min)",
                        "within timeout",
                    ],
                    [
                        [
                            r["site"],
                            f"{local(r['outage_from_s'], tz)}-{local(r['outage_until_s'], tz)}",
                            None if r["fallback_after_s"] is None else r["fallback_after_s"] / 60,
                            None if r["resumed_after_end_s"] is None else r["resumed_after_end_s"] / 60,
                            "yes" if r["within_timeout"] else ("n/a" if not r["expected_fallback"] else "NO"),
                        ]
                        for r in faults
                    ],
                ),
            )
        )
    else:
        blocks.append(("p", "No outages in this scenario."))
    healthy = f["fallback"]["healthy_sites_in_fallback"]
    if healthy:
        blocks.append(
            ("p", f"Sites without an outage that still fell back (server too slow?): {', '.join(healthy)}")
        )
    blocks += [
        ("h2", "Per site"),
        (
            "table",
            (
                [
                    "site",
                    "agreement",
                    "devices",
                    "exported kWh",
                    "curtailed kWh",
                    "of which by fallback limits",
                    "curtailed",
                    "ramp kWh",
                    "compliance",
                    "fallback min",
                ],
                [
                    [
                        r["site"] + (" (non-compliant)" if r["non_compliant"] else ""),
                        r["agreement"],
                        ", ".join(r["devices"]),
                        r["exported_kwh"],
                        r["curtailed_kwh"],
                        r["curtailed_fallback_kwh"],
                        f"{100 * r['curtailed_share']:.1f} %",
                        r["ramp_kwh"],
                        f"{100 * r['compliance']:.1f} %",
                        r["fallback_s"] / 60,
                    ]
                    for r in f["per_site"]
                ],
            ),
        ),
        ("h2", "Server"),
        (
            "p",
            "Requests by kind: "
            + ", ".join(f"{k} {n}" for k, n in sorted(srv["requests"].items()))
            + (f"; errors: {srv['errors']}" if srv["errors"] else "; no errors")
            + f"; {len(srv['recomputes'])} recomputations.",
        ),
    ]
    return blocks


def validity_blocks(f: dict[str, Any]) -> list[Block]:
    """A run whose figures do not describe the engine says so before anything else."""
    validity = f.get("validity") or {"valid": True, "problems": [], "warnings": []}
    blocks: list[Block] = []
    if not validity["valid"]:
        blocks.append(
            (
                "p",
                "**NOT VALID: these figures do not describe the engine's envelopes.** "
                + " ".join(f"{p[0].upper()}{p[1:]}." for p in validity["problems"]),
            )
        )
    if validity["warnings"]:
        blocks.append(
            ("p", "**Warning:** " + " ".join(f"{w[0].upper()}{w[1:]}." for w in validity["warnings"]))
        )
    return blocks


def _engine_cell(engine: dict[str, Any]) -> str:
    if not engine.get("observed"):
        return "not observed (a running server recomputes on its own schedule)"
    text = (
        f"{engine['published']} of {engine['recomputations']} published, {engine['failed']} failed, "
        f"{engine['skipped']} skipped"
    )
    if engine["on_fallback_s"]:
        text += (
            f"; on fallback-valued envelopes {engine['on_fallback_s'] / 3600:.2f} h "
            f"({100 * engine['on_fallback_share']:.0f} % of the run)"
        )
    return text


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for kind, body in blocks:
        if kind in ("h1", "h2"):
            out.append(f"{'#' * int(kind[1])} {body}\n")
        elif kind == "p":
            out.append(f"{body}\n")
        elif kind == "img":
            out.append(f"![{body[0]}]({body[1]})\n")
        elif kind == "table":
            header, rows = body
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out.extend("| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows)
            out.append("")
    return "\n".join(out)


def to_html(blocks: list[Block], title: str) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}"
        "th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
    ]
    for kind, body in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(str(body))}</{kind}>")
        elif kind == "p":
            text = html.escape(str(body))
            while "**" in text:
                text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
            parts.append(f"<p>{text}</p>")
        elif kind == "img":
            parts.append(f"<img alt='{html.escape(body[0])}' src='{html.escape(body[1])}'>")
        elif kind == "table":
            header, rows = body
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts.extend(
                "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
            )
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
