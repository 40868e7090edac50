"""`gridshare plan` as a planner runs it: a full report, and bad input answered with file, field, line.

Each kind of bad input has its own exit status (docs/planning.md): 3 network, 4 profiles, 5
candidate sites, 7 study settings; 2 is click's usage error. The message is one line, never a
traceback, and names where to look.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from gridshare.cli import main
from gridshare.grid.examples import demo_feeder_path

DEMO = demo_feeder_path()


def _plan(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["plan", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_a_study_writes_the_report_every_figure_as_data_and_the_assumptions(tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, output = _plan(
        "run", "demo", "--year", "2026", "--rule", "pro-rata", "--rule", "lifo",
        "--behaviour", "as-issued", "--behaviour", "forecast-aware",
        "--site", "f2-c:1500", "--tranche", "thermal:dt-21", "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    assert "Dynamic sites: annual curtailment" in output
    page = (out / "report.html").read_text()
    for name in (
        "sites",
        "totals",
        "heatmap",
        "duration_curve",
        "events",
        "attribution",
        "constraints",
        "tranche",
    ):
        assert (out / f"{name}.csv").is_file(), name
        assert (out / f"{name}.parquet").is_file(), name
    for image in (
        "curtailment_by_site.png",
        "heatmap_candidate-1.png",
        "duration_candidate-1.png",
        "tranche.png",
    ):
        assert (out / image).stat().st_size > 5_000, image
        assert image in page
    # the page states the assumptions a financier needs
    assumptions = json.loads((out / "assumptions.json").read_text())
    assert assumptions["behaviours"] == ["as-issued", "forecast-aware"]
    assert assumptions["margin_fraction"] == 0.1
    assert assumptions["network_version"] in page and len(assumptions["network_version"]) == 12
    assert "built-in clear-sky PV shape" in page and "Forecast-aware" in page and "As issued" in page
    sites = pd.read_parquet(out / "sites.parquet")
    assert set(sites["rule"]) == {"pro-rata", "lifo"}
    candidate = sites[(sites["site_id"] == "candidate-1") & (sites["behaviour"] == "as-issued")]
    assert (
        candidate.set_index("rule").loc["lifo", "curtailed_pct"]
        > candidate.set_index("rule").loc["pro-rata", "curtailed_pct"]
    )  # queued last: LIFO curtails it first


def test_a_bad_profile_value_names_file_column_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "pv.csv"
    bad.write_text("time,pv\n2026-01-01T00:00:00Z,0.1\n2026-01-01T01:00:00Z,0.2\n2026-01-01T02:00:00Z,lots\n")
    code, output = _plan("run", "demo", "--profiles", str(bad), "--out", str(tmp_path / "r"))
    assert code == 4
    assert f"{bad}:4: pv: 'lots' is not a number" in output
    kw = tmp_path / "kw.csv"
    kw.write_text("time,pv\n2026-01-01T00:00:00Z,0.1\n2026-01-01T01:00:00Z,950\n")
    code, output = _plan("run", "demo", "--profiles", str(kw), "--out", str(tmp_path / "r"))
    assert code == 4 and f"{kw}:3: pv: 950 is outside [0, 2]" in output and "not kW" in output
    gap = tmp_path / "gap.csv"
    gap.write_text("time,pv\n2026-01-01T00:00:00Z,0.1\n2026-01-01T01:00:00Z,0.1\n2026-01-01T03:00:00Z,0.1\n")
    code, output = _plan("run", "demo", "--profiles", str(gap), "--out", str(tmp_path / "r"))
    assert code == 4 and f"{gap}:4: time:" in output and "uniform" in output
    typo = tmp_path / "typo.csv"
    typo.write_text(
        "time,pv,pv:solar-farm-nrth\n2026-06-01T00:00:00Z,0.1,0.1\n2026-06-01T01:00:00Z,0.2,0.2\n"
    )
    code, output = _plan("run", "demo", "--profiles", str(typo), "--out", str(tmp_path / "r"))
    assert code == 4 and "pv:solar-farm-nrth: names no site or node" in output


def test_a_bad_network_file_names_the_field_and_its_line(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("node: f2-d\n", "node: f2-x\n", 1)
    broken = tmp_path / "feeder.yaml"
    broken.write_text(text)
    line = text.splitlines().index("    node: f2-x") + 1
    code, output = _plan("run", str(broken), "--out", str(tmp_path / "r"))
    assert code == 3
    assert f"{broken}:{line - 1}: sites[0].node:" in output or f"{broken}:{line}: sites[0].node:" in output
    assert "unknown node 'f2-x'" in output
    code, output = _plan("run", "simbench:not-a-grid", "--out", str(tmp_path / "r"))
    assert code == 3 and "simbench:not-a-grid" in output
    code, output = _plan("run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r"))
    assert code == 3 and "no such file" in output


def test_bad_candidate_sites_and_settings(tmp_path: Path) -> None:
    sites = tmp_path / "sites.csv"
    sites.write_text("id,node,export_kw\nnew-pv,f1-a,2000\nnew-wind,f2-b,\n")
    code, output = _plan("run", "demo", "--candidates", str(sites), "--out", str(tmp_path / "r"))
    assert code == 5 and f"{sites}:3: export_kw: is required" in output
    code, output = _plan("run", "demo", "--site", "nowhere:500", "--out", str(tmp_path / "r"))
    assert code == 5 and "unknown node 'nowhere'" in output
    code, output = _plan("run", "demo", "--site", "f1-a:500:wind", "--out", str(tmp_path / "r"))
    assert code == 4 and "no profile for technology 'wind'" in output
    code, output = _plan("run", "demo", "--interval", "7m", "--out", str(tmp_path / "r"))
    assert code == 7 and "interval" in output
    code, output = _plan("run", "demo", "--rule", "random", "--out", str(tmp_path / "r"))
    assert code == 2  # click refuses an unknown choice itself
