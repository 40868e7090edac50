"""The study report: one HTML page a developer can hand to a financier, and every figure as data.

`write_report` writes into one directory: `report.html` (tables, plots, the assumptions), the
plots as PNG, each DataFrame of the result as `<name>.csv` and `<name>.parquet` (Parquet needs
pyarrow, in the `planning` extra; without it only CSV), and `assumptions.json`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gridshare import __version__
from gridshare.planning import plots
from gridshare.planning.errors import OutputError
from gridshare.planning.study import Study, StudyResult

BEHAVIOUR_TEXT = {
    "as-issued": (
        "As issued: each dynamic site's envelope shares the capacity it agreed to, as the live engine "
        "does by default. Under LIFO and tranches an earlier site keeps capacity it has agreed but will "
        "not use in that interval, and later sites are curtailed for it."
    ),
    "forecast-aware": (
        "Forecast-aware: each dynamic site's share is capped at its forecast output plus a margin of "
        "{margin:.0%} of its agreed capacity, so capacity an earlier site will not use goes to later "
        "ones. The live engine does this with the setting forecast_aware_envelopes (margin: "
        "forecast_margin_fraction). In this study the forecast is the profile itself (a perfect "
        "forecast); a real forecast error shifts curtailment between sites."
    ),
}

DIFFERENCES = [
    "Profiles are the forecast: the envelopes are those a perfect forecast of every site and customer "
    "would have issued. A live fleet is planned on a forecast (clear-sky shape and telemetry carried "
    "forward), which matters only for forecast-aware envelopes: as issued, a site's envelope does not "
    "depend on its own forecast.",
    "No storage behind the meter: a battery that soaks up surplus before the site curtails (as the "
    "simulated fleet's gateways do) would lower the curtailment shown.",
    "Each interval's envelope is held for the whole interval and compared with the interval's mean "
    "output; inverter ramp limits after a curtailment and the 100 W rounding of published limits are "
    "left out (both well under 0.1 % of energy).",
    "The network is the engine's radial, linearised model; the AC check below measures how far real "
    "power flow departs from it.",
]


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or value is None:
        return _esc(value)
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return _esc(value)


def _table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, int]], max_rows: int = 60) -> str:
    """An HTML table of `frame` with (column, heading, digits) columns."""
    if frame is None or frame.empty:
        return "<p><em>None.</em></p>"
    head = "".join(f"<th>{_esc(h)}</th>" for _, h, _ in columns)
    body = []
    for _, row in frame.head(max_rows).iterrows():
        cells = "".join(
            f"<td class='n'>{_num(row[c], d)}</td>"
            if isinstance(row[c], int | float) and not isinstance(row[c], bool)
            else f"<td>{_esc(row[c])}</td>"
            for c, _, d in columns
        )
        body.append(f"<tr>{cells}</tr>")
    more = (
        f"<p class='note'>{len(frame) - max_rows} more rows in the CSV.</p>" if len(frame) > max_rows else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _write_frames(result: StudyResult, out: Path) -> list[str]:
    written = []
    for name, frame in result.frames().items():
        frame.to_csv(out / f"{name}.csv", index=False)
        written.append(f"{name}.csv")
        try:
            frame.to_parquet(out / f"{name}.parquet", index=False)
            written.append(f"{name}.parquet")
        except ImportError:
            pass
    return written


def focus_sites(study: Study, result: StudyResult) -> list[str]:
    """Candidates first, else the most curtailed dynamic sites: whose curves the report draws."""
    chosen = [c.site.id for c in study.candidates]
    if not chosen:
        dyn = result.sites[result.sites["dynamic"]]
        chosen = list(
            dyn.groupby("site_id")["energy_curtailed_mwh"].max().sort_values(ascending=False).index[:2]
        )
    return chosen[:3]


def write_report(study: Study, result: StudyResult, out: Path) -> Path:
    """report.html, the PNGs, a CSV and Parquet file per figure, and assumptions.json; returns the page."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = _write_frames(result, out)
        images = _plots(study, result, out)
        assumptions = {k: v for k, v in result.assumptions.items()}
        if result.ac is not None:
            assumptions["ac_check"] = {k: v for k, v in result.ac.items() if k != "violations"}
        (out / "assumptions.json").write_text(
            json.dumps(assumptions, indent=1, default=str), encoding="utf-8"
        )
        files.append("assumptions.json")
        page = out / "report.html"
        page.write_text(_page(study, result, images, files), encoding="utf-8")
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc), str(out)) from None
    return page


def _plots(study: Study, result: StudyResult, out: Path) -> dict[str, list[tuple[str, str]]]:
    """Section -> [(png, caption)]."""
    focus = focus_sites(study, result)
    images: dict[str, list[tuple[str, str]]] = {"overview": [], "site": [], "network": [], "sizing": []}

    def add(section: str, path: Path | None, caption: str) -> None:
        if path is not None:
            images[section].append((path.name, caption))

    add(
        "overview",
        plots.curtailment_by_site(
            result.sites, out / "curtailment_by_site.png", focus if study.candidates else ()
        ),
        "Share of each dynamic site's available energy curtailed "
        "over the year, per rule and envelope behaviour.",
    )
    for site in focus:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in site)
        add(
            "site",
            plots.duration_curves(result.duration_curve, site, out / f"duration_{safe}.png"),
            f"{site}: curtailed power sorted from the largest. The area under a curve is the energy lost.",
        )
        add(
            "site",
            plots.heatmaps(result.heatmap, site, out / f"heatmap_{safe}.png"),
            f"{site}: when the energy is lost, by month and local hour of day.",
        )
        add(
            "site",
            plots.event_lengths(result.events, site, out / f"events_{safe}.png"),
            f"{site}: how many curtailment events a year last at least a given time.",
        )
    add(
        "network",
        plots.constraint_hours(result.constraints, out / "constraints.png"),
        "Hours a year each constraint binds while curtailing a site behind it.",
    )
    if result.tranche is not None and not result.tranche.empty:
        constraint = result.tranche["constraint"].iloc[0]
        add(
            "sizing",
            plots.sizing_curve(
                result.tranche,
                out / "tranche.png",
                f"Pro-rata tranche at {constraint}: curtailment against tranche size",
                [("curtailed_pct", "tranche members together"), ("worst_member_pct", "worst member")],
            ),
            "Each point is a full year run with the tranche at that size.",
        )
    if result.largest is not None and not result.largest.empty:
        node = result.largest["node"].iloc[0]
        add(
            "sizing",
            plots.sizing_curve(
                result.largest,
                out / "largest_site.png",
                f"One new site at {node}: its curtailment against its size",
                [("curtailed_pct", "the new site")],
            ),
            "Each point is a full year run with the site at that size (bisection towards the target).",
        )
    return images


def _figures(items: list[tuple[str, str]]) -> str:
    return "".join(
        f"<figure><img src='{_esc(name)}' "
        f"alt='{_esc(caption)}'><figcaption>{_esc(caption)}</figcaption></figure>"
        for name, caption in items
    )


CSS = "\n".join(
    [
        "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;"
        "margin:2em auto;padding:0 1em;color:#1d2430;line-height:1.45}",
        "h1{font-size:1.6em;margin-bottom:.2em}",
        "h2{border-bottom:2px solid #1f5aa6;padding-bottom:.2em;margin-top:1.8em}",
        ".sub{color:#555}",
        "table{border-collapse:collapse;margin:.6em 0;font-size:.88em}",
        "th,td{border:1px solid #d5dae1; padding:.25em .5em}",
        "th{background:#eef2f7;text-align:left}",
        "td.n{text-align:right;font-variant-numeric:tabular-nums}",
        ".key{background:#f4f8fd;border-left:4px solid #1f5aa6;padding:.6em 1em;margin:1em 0}",
        "figure{margin:1em 0}",
        "img{max-width:100%;border:1px solid #e3e6ea}",
        "figcaption{color:#555;font-size:.88em}",
        ".note{color:#666;font-size:.85em}",
        "li{margin:.2em 0}",
    ]
)


def _key_findings(study: Study, result: StudyResult) -> str:
    focus = focus_sites(study, result)
    rows = result.sites[result.sites["site_id"].isin(focus)]
    first = rows[rows["year"] == rows["year"].iloc[0]] if not rows.empty else rows
    items = []
    for site in focus:
        part = first[first["site_id"] == site]
        values = "; ".join(
            f"{r.rule} {r.behaviour}: <b>{r.curtailed_pct:.1f} %</b> ({r.energy_curtailed_mwh:,.0f} MWh of "
            f"{r.energy_available_mwh:,.0f} MWh, {r.hours_curtailed:,.0f} h)"
            for r in part.itertuples()
        )
        items.append(f"<li><b>{_esc(site)}</b>: {values}</li>")
    if not result.percentiles.empty:
        p = result.percentiles[result.percentiles["site_id"].isin(focus)]
        for r in p.itertuples():
            items.append(
                f"<li>{_esc(r.site_id)} ({r.rule}, {r.behaviour}) over {r.years} years/draws: P10 "
                f"{r.curtailed_pct_p10:.1f} %, P50 {r.curtailed_pct_p50:.1f} "
                f"%, P90 {r.curtailed_pct_p90:.1f} %</li>"
            )
    if result.largest is not None and not result.largest.empty:
        r = result.largest.iloc[0]
        items.append(
            f"<li>Largest new site at <b>{_esc(r['node'])}</b> "
            f"with at most {r['target_pct']:g} % curtailment "
            f"({r['rule']}): <b>{r['largest_kw'] / 1000:,.2f} MW</b></li>"
        )
    if result.tranche is not None and not result.tranche.empty:
        r = result.tranche.iloc[0]
        items.append(
            f"<li>Largest pro-rata tranche at <b>{_esc(r['constraint'])}</b> "
            f"studied at {r['target_pct']:g} %: "
            f"<b>{r['largest_kw'] / 1000:,.2f} MW</b> over {int(r['members'])} nodes</li>"
        )
    if result.marginal is not None and not result.marginal.empty:
        r = result.marginal.iloc[-1]
        items.append(
            f"<li>The next {(r['size_kw'] - result.marginal['size_kw'].iloc[0]) / 1000:g} MW at "
            f"<b>{_esc(r['node'])}</b> ({r['rule']}) loses "
            f"<b>{r['marginal_curtailed_pct']:.1f} %</b> of its energy "
            "to curtailment, counting what it takes from the sites "
            f"already there ({r['marginal_own_curtailed_pct']:.1f} % "
            "of it is its own)</li>"
        )
    if result.ac is not None:
        a = result.ac
        items.append(
            f"<li>AC power flow of {a['hours_solved']:,} hourly envelopes each way: "
            f"<b>{a['intervals_with_violation']} intervals</b> beyond a rating or voltage bound by more than "
            f"{a['tolerance_pct']:g} %</li>"
        )
    return f"<div class='key'><b>Key findings</b><ul>{''.join(items)}</ul></div>"


def _page(
    study: Study, result: StudyResult, images: dict[str, list[tuple[str, str]]], files: list[str]
) -> str:
    a = result.assumptions
    title = f"Curtailment study: {a['network']}"
    periods = ", ".join(a["periods"][:6]) + (" ..." if len(a["periods"]) > 6 else "")
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p class='sub'>{_esc(periods)} at {a['interval_s'] // 60}-minute intervals; rules: "
        f"{_esc(', '.join(a['rules']))}; envelopes: {_esc(', '.join(a['behaviours']))}. Network version "
        f"{_esc(a['network_version'])} ({_esc(a['network_source'])}). GridShare {__version__}, "
        f"{_esc(a['generated_at'])}.</p>",
        _key_findings(study, result),
        "<h2>Totals</h2>",
        _table(
            result.totals,
            [
                ("year", "year", 0),
                ("rule", "rule", 0),
                ("behaviour", "envelopes", 0),
                ("group", "sites", 0),
                ("energy_available_mwh", "available MWh", 0),
                ("energy_curtailed_mwh", "curtailed MWh", 1),
                ("curtailed_pct", "curtailed %", 2),
                ("infeasible_intervals", "infeasible intervals", 0),
            ],
        ),
        "<h2>Per site</h2>",
        "<p>Dynamic sites (envelopes) first; fixed sites are held at their agreements, so what they lose is "
        "their agreement, not the network.</p>",
        _table(
            result.sites.sort_values(["dynamic", "curtailed_pct"], ascending=[False, False]),
            [
                ("site_id", "site", 0),
                ("node", "node", 0),
                ("rule", "rule", 0),
                ("behaviour", "envelopes", 0),
                ("size_kw", "size kW", 0),
                ("energy_available_mwh", "available MWh", 0),
                ("energy_curtailed_mwh", "curtailed MWh", 1),
                ("curtailed_pct", "curtailed %", 2),
                ("hours_curtailed", "hours", 0),
                ("events", "events", 0),
                ("longest_event_h", "longest h", 1),
                ("import_refused_mwh", "import refused MWh", 1),
            ],
            max_rows=40,
        ),
        _figures(images["overview"]),
    ]
    if not result.percentiles.empty:
        parts += [
            "<h2>Across years and draws</h2>",
            "<p>P10 / P50 / P90: the 10th, 50th and 90th percentiles of the annual curtailment across the "
            "profile years or weather draws (P90: nine years in ten curtail no more than this).</p>",
            _table(
                result.percentiles,
                [
                    ("site_id", "site", 0),
                    ("rule", "rule", 0),
                    ("behaviour", "envelopes", 0),
                    ("years", "years", 0),
                    ("curtailed_pct_p10", "P10 %", 2),
                    ("curtailed_pct_p50", "P50 %", 2),
                    ("curtailed_pct_p90", "P90 %", 2),
                ],
                max_rows=40,
            ),
        ]
    parts += ["<h2>When and how long</h2>", _figures(images["site"])]
    parts += [
        "<h2>What causes it</h2>",
        "<p>In each curtailed interval the constraints binding "
        "there that limit the site share its curtailment "
        "equally.</p>",
        _table(
            result.attribution.sort_values("curtailed_mwh", ascending=False),
            [
                ("site_id", "site", 0),
                ("rule", "rule", 0),
                ("behaviour", "envelopes", 0),
                ("cause", "cause", 0),
                ("curtailed_mwh", "MWh", 1),
                ("share_pct", "share %", 1),
            ],
            max_rows=25,
        ),
        _table(
            result.constraints[result.constraints["hours_binding"] > 0],
            [
                ("constraint", "constraint", 0),
                ("rule", "rule", 0),
                ("behaviour", "envelopes", 0),
                ("hours_binding", "hours binding", 0),
                ("hours_curtailing", "hours curtailing", 0),
                ("curtailed_mwh", "MWh owed", 1),
            ],
            max_rows=25,
        ),
        _figures(images["network"]),
    ]
    if images["sizing"] or result.marginal is not None:
        parts += ["<h2>Sizing</h2>", _figures(images["sizing"])]
        if result.tranche is not None:
            parts.append(
                "<p>The tranche is new capacity spread evenly over "
                "the nodes behind the constraint, sharing pro-rata "
                "with the dynamic sites already there (the Ameren "
                "report's pro-rata tranche, studied at a margin below "
                "the offer, e.g. 2.5 % for 5 %).</p>"
            )
            parts.append(
                _table(
                    result.tranche,
                    [
                        ("size_kw", "tranche kW", 0),
                        ("curtailed_pct", "members %", 2),
                        ("worst_member_pct", "worst member %", 2),
                        ("curtailed_mwh", "MWh", 0),
                    ],
                )
            )
        if result.marginal is not None:
            parts.append(
                _table(
                    result.marginal,
                    [
                        ("node", "node", 0),
                        ("rule", "rule", 0),
                        ("size_kw", "size kW", 0),
                        ("candidate_curtailed_pct", "its curtailment %", 2),
                        ("all_sites_curtailed_mwh", "all sites curtailed MWh", 1),
                        ("marginal_curtailed_pct", "marginal %", 2),
                    ],
                )
            )
    parts += ["<h2>AC power-flow check</h2>", _ac_section(result)]
    parts += ["<h2>Assumptions</h2>", _assumptions(study, result)]
    parts += [
        "<h2>Files</h2><p>Every figure as data: "
        + ", ".join(f"<a href='{_esc(f)}'>{_esc(f)}</a>" for f in files)
        + ".</p></body></html>"
    ]
    return "\n".join(parts)


def _ac_section(result: StudyResult) -> str:
    a = result.ac
    if a is None:
        return (
            "<p>Not run. The AC check solves the imported pandapower "
            "model (a SimBench grid, a pandapower file or "
            "an import directory) with <code>--ac</code>.</p>"
        )
    text = (
        "<p>pandapower's admittance model of the imported network, "
        "solved at every hour of the year with every site "
        "at its envelope and every other customer at its "
        f"profile: exporting ({a['hours_solved']:,} hours) and "
        f"importing ({a['hours_solved']:,} hours), {a['solves']:,} solves in {a['seconds']:.1f} s. "
        f"<b>{a['intervals_with_violation']}</b> intervals have a "
        "line or transformer above its rating or a bus voltage "
        f"outside its bounds by more than {a['tolerance_pct']:g} "
        f"%; {a['intervals_beyond_a_bound_at_all']} are beyond "
        "a bound at all (the envelopes fill the linear model's headroom exactly, so any difference "
        f"between it and AC shows; the largest excess is {a['worst_excess_pct']:.2f} % of its bound: "
        "the linearisation error). Highest loading "
        f"{a['worst_loading_pct']:.1f} % of rating; voltages "
        f"{a['lowest_voltage_pu']:.4f} to {a['highest_voltage_pu']:.4f} "
        f"pu. {a['not_converged']} solves did not "
        f"converge. Cross-check against pandapower.runpp at three hours: largest voltage difference "
        f"{a['cross_check_max_dv_pu']:.1e} pu.</p>"
    )
    violations = a.get("violations")
    if isinstance(violations, pd.DataFrame) and not violations.empty:
        text += _table(
            violations,
            [
                ("interval_start", "interval (UTC)", 0),
                ("case", "case", 0),
                ("element", "element", 0),
                ("quantity", "quantity", 0),
                ("value", "value", 4),
                ("limit", "limit", 4),
            ],
            max_rows=20,
        )
    return text


def _assumptions(study: Study, result: StudyResult) -> str:
    a = result.assumptions
    behaviour = "".join(
        f"<li>{_esc(BEHAVIOUR_TEXT[b].format(margin=a['margin_fraction']))}</li>" for b in a["behaviours"]
    )
    profiles = "".join(f"<li>{_esc(line)}</li>" for line in a["profiles"]) or "<li>built-in shapes</li>"
    notes = "".join(f"<li>{_esc(n)}</li>" for n in a["import_notes"])
    candidates = "".join(
        f"<li>{_esc(c['id'])}: {c['export_kw']:,.0f} kW "
        f"{_esc(c['technology'])} at {_esc(c['node'])}, dynamic, queued "
        "after every existing site</li>"
        for c in a["candidates"]
    )
    return (
        f"<ul><li>Network: {_esc(a['network'])}, {a['nodes']} "
        f"nodes, {a['branches']} branches, {a['sites']} sites "
        f"({a['dynamic_sites']} dynamic); version "
        f"{_esc(a['network_version'])} from {_esc(a['network_source'])}; "
        f"power factor {a['power_factor']}, time zone {_esc(a['timezone'])}.</li>"
        f"{candidates}"
        f"<li>Profiles ({_esc(a['profile_source'])}):<ul>{profiles}</ul></li>"
        f"<li>Envelope behaviour:<ul>{behaviour}</ul></li>"
        "<li>Curtailment: generation minus the site's own load above its export envelope, as a share of the "
        "generation available. An event is a run of intervals "
        "with curtailment above 0.01 % of the site's size.</li>"
        f"<li>Periods: {_esc(', '.join(a['periods']))}"
        + (f" ({a['draws']} day-resampled draws)" if a["draws"] else "")
        + "</li>"
        + (f"<li>Import notes:<ul>{notes}</ul></li>" if notes else "")
        + "<li>What a live fleet may see differently:<ul>"
        + "".join(f"<li>{_esc(d)}</li>" for d in DIFFERENCES)
        + "</ul></li></ul>"
    )
