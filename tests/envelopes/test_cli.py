"""`gridshare envelopes compute` through click's test runner, as a user would run it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridshare.envelopes.commands import EXIT_INFEASIBLE, envelopes_group, parse_duration_s
from gridshare.grid.examples import demo_feeder_path

DEMO = demo_feeder_path()
START = "2026-06-21T16:00:00Z"  # noon in Richmond, summer: congested


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(envelopes_group, ["compute", *args])
    return result.exit_code, result.output


def test_csv_output_has_a_row_per_site_and_interval_and_a_constraints_file(tmp_path: Path) -> None:
    out = tmp_path / "doe.csv"
    code, output = _run(str(DEMO), "--start", START, "--horizon", "2h", "--interval", "5m", "--out", str(out))
    assert code == 0, output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["site_id", "interval_start", "export_limit_w", "import_limit_w"]
    assert len(rows) == 30 * 24
    assert rows[0]["interval_start"] == "2026-06-21T16:00:00Z"
    assert rows[1]["interval_start"] == "2026-06-21T16:05:00Z"
    farm = [float(r["export_limit_w"]) for r in rows if r["site_id"] == "solar-farm-north"]
    assert len(farm) == 24 and max(farm) < 4_000_000  # curtailed at noon
    constraints = out.with_name("doe.constraints.csv")
    with constraints.open() as handle:
        crows = list(csv.DictReader(handle))
    assert {"constraint", "rating", "loading", "headroom", "binding"} <= set(crows[0])
    zone_export = [r for r in crows if r["constraint"] == "thermal:zone-tx" and r["direction"] == "export"]
    assert len(zone_export) == 24
    assert any(r["binding"] == "True" for r in zone_export)
    assert all(float(r["loading"]) <= float(r["rating"]) * (1 + 1e-6) for r in zone_export)
    assert "30 sites (19 dynamic), 24 intervals" in output
    assert "no infeasibilities" in output


def test_json_output_holds_envelopes_and_constraints(tmp_path: Path) -> None:
    out = tmp_path / "doe.json"
    code, output = _run(
        str(DEMO),
        "--policy",
        "lifo",
        "--start",
        START,
        "--horizon",
        "900",
        "--interval",
        "300",
        "--out",
        str(out),
    )
    assert code == 0, output
    doc = json.loads(out.read_text())
    assert doc["policy"] == "lifo" and doc["n_intervals"] == 3
    assert len(doc["envelopes"]) == 30 * 3
    assert doc["constraints"] and doc["infeasibilities"] == []


def test_default_start_is_the_next_interval_boundary(tmp_path: Path) -> None:
    out = tmp_path / "doe.csv"
    code, output = _run(str(DEMO), "--horizon", "10m", "--out", str(out))
    assert code == 0, output
    first = next(csv.DictReader(out.open()))["interval_start"]
    assert first.endswith(("0:00Z", "5:00Z"))  # a 5-minute boundary


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--policy", "random"], "Invalid value for '--policy'"),
        (["--horizon", "soon"], "Invalid value for '--horizon'"),
        (["--horizon", "7m"], "not a whole number of 300 s intervals"),
        (["--start", "yesterday"], "Invalid value for '--start'"),
        (["--out", "doe.txt"], "must end in .csv or .json"),
    ],
)
def test_bad_options_are_named(tmp_path: Path, args: list[str], expected: str) -> None:
    defaults = {"--out": str(tmp_path / "x.csv")}
    argv = [str(DEMO), *args]
    if "--out" not in args:
        argv += ["--out", defaults["--out"]]
    code, output = _run(*argv)
    assert code == 2
    assert expected in output
    assert "Traceback" not in output


def test_bad_network_file_names_the_field_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("rating: dominion/12-16-20", "rating: dominion/x"))
    code, output = _run(str(bad), "--out", str(tmp_path / "x.csv"))
    assert code == 1
    assert "network.branches[0].rating: unknown preset 'dominion/x'" in output
    assert "Traceback" not in output
    code, output = _run(str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x.csv"))
    assert code == 1 and "cannot read" in output


def test_durations() -> None:
    assert parse_duration_s("24h", "--horizon") == 86_400
    assert parse_duration_s("90m", "--horizon") == 5_400
    assert parse_duration_s("1h30m", "--horizon") == 5_400
    assert parse_duration_s("3600", "--horizon") == 3_600
    assert parse_duration_s("5m", "--interval") == 300


def test_limits_are_rounded_down_never_up(tmp_path: Path) -> None:
    """The server floors limits before publishing; a planner's CSV must not promise more than it would."""
    from gridshare.envelopes.compute import compute_envelopes
    from gridshare.grid.netfile import load_network_file

    out = tmp_path / "doe.json"
    code, output = _run(str(DEMO), "--start", START, "--horizon", "1h", "--out", str(out))
    assert code == 0, output
    nf = load_network_file(DEMO)
    exact = compute_envelopes(
        nf.network, nf.sites, datetime(2026, 6, 21, 16, tzinfo=UTC), 3600, 300, "pro-rata"
    )
    written = {(r["site_id"], r["interval_start"]): r for r in json.loads(out.read_text())["envelopes"]}
    fractional = 0
    for s, site_id in enumerate(exact.site_ids):
        for t, start in enumerate(exact.interval_starts):
            row = written[(site_id, start.strftime("%Y-%m-%dT%H:%M:%SZ"))]
            for column, values in (
                ("export_limit_w", exact.export_limit_w),
                ("import_limit_w", exact.import_limit_w),
            ):
                true_w, shown_w = float(values[t, s]), row[column]
                assert shown_w <= true_w, (site_id, column, true_w, shown_w)
                assert true_w - shown_w < 0.1 + 1e-6
                fractional += (true_w * 10) % 1 > 0.5  # a value rounding to nearest would have raised
    assert fractional > 0  # the check above had values where nearest and down differ


def test_errors_name_the_file_once(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    code, output = _run(str(bad_yaml), "--out", str(tmp_path / "x.csv"))
    assert code == 1 and "invalid YAML at line 2" in output
    assert output.count(str(bad_yaml)) == 1, output
    missing = tmp_path / "missing.yaml"
    code, output = _run(str(missing), "--out", str(tmp_path / "x.csv"))
    assert code == 1 and output.count(str(missing)) == 1, output


def _unmeetable_floor(tmp_path: Path) -> Path:
    """The demo feeder with one site promised an 800 kW export floor behind a 500 kVA transformer."""
    text = DEMO.read_text()
    site = '{id: res-11-2, node: lv-11, nmi: "5100001112", max_export_kw: 10'
    floor = "agreement: {type: dynamic, export_floor_kw: 1.5}, forecast: {pv_kw: 10, load_kw: 5}}"
    assert site in text and floor in text
    text = text.replace(site, site.replace("max_export_kw: 10", "max_export_kw: 900"), 1)
    text = text.replace(floor, floor.replace("export_floor_kw: 1.5", "export_floor_kw: 800"), 1)
    path = tmp_path / "floors.yaml"
    path.write_text(text)
    return path


def test_unmeetable_floors_exit_with_their_own_status(tmp_path: Path) -> None:
    out = tmp_path / "doe.csv"
    code, output = _run(
        str(_unmeetable_floor(tmp_path)), "--start", START, "--horizon", "15m", "--out", str(out)
    )
    assert code == EXIT_INFEASIBLE == 3, output
    assert "3 infeasibilities" in output and "thermal:dt-11" in output
    assert out.is_file()  # the envelopes are still written, for the planner to look at
    help_text = CliRunner().invoke(envelopes_group, ["compute", "--help"]).output
    assert "3  envelopes written, but floors" in help_text


def test_the_lp_solver_prints_nothing_of_its_own(tmp_path: Path) -> None:
    """HiGHS announces itself on the process's stdout (not sys.stdout): run the real CLI to see it."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "gridshare"),
            "envelopes",
            "compute",
            str(DEMO),
            "--policy",
            "max-total",
            "--start",
            START,
            "--horizon",
            "10m",
            "--out",
            str(tmp_path / "doe.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "HiGHS" not in result.stdout and "Copyright" not in result.stdout, result.stdout
    assert result.stdout.startswith("30 sites (19 dynamic)"), result.stdout
