"""`gridshare sim run|compare` as a user runs them, output piped (no terminal): what they print and exit.

The runs are short (four houses, minutes of simulated time) but real: a spawned server over mTLS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridshare.cli import main
from gridshare.grid.examples import demo_feeder_path

GRIDSHARE = Path(sys.executable).with_name("gridshare")


def _scenario(folder: Path, **extra: str) -> Path:
    lines = {
        "name": "tiny",
        "network": "{generate: {sites: 4, transformers: 1, seed: 1}}",
        "start": "2026-12-21T11:00:00",  # a summer midday in Brisbane: PV ramps up from the first step
        "duration_h": "0.5",
        "step_s": "60",
        "clock": "{mode: accelerated, factor: 120}",
        "server": "{post_rate_s: 300, recompute_interval_s: 600}",
        **extra,
    }
    path = folder / "tiny.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return path


def _gridshare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
    return subprocess.run(
        [str(GRIDSHARE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_sim_run_posts_at_the_mirror_rate_and_says_what_it_measured(tmp_path: Path) -> None:
    """Devices post readings at the MirrorUsagePoint's postRate (300 s here), not the 900 s default
    that applies to an EndDevice without one; the summary is whole lines; ramp-up is not curtailment."""
    result = _gridshare("sim", "run", str(_scenario(tmp_path)), "--out", "report", cwd=tmp_path)
    assert result.returncode in (0, 3), result.stderr  # 3: a loaded machine lagged (checked below)
    lines = result.stderr.splitlines()
    summary = next(line for line in lines if line.startswith("exported "))
    assert "site-hours" in summary  # one line, not cut at 80 columns
    assert "held back by the PV ramp-up" in summary
    engine = next(line for line in lines if line.startswith("engine: "))
    figs = json.loads((tmp_path / "report" / "figures.json").read_text())
    assert engine == (
        f"engine: {figs['engine']['published']} of {figs['engine']['recomputations']} recomputations "
        f"published, {figs['engine']['failed']} failed, {figs['engine']['skipped']} skipped"
    )
    assert figs["engine"]["recomputations"] >= 3  # the first, then every 600 simulated seconds
    assert result.returncode == (0 if figs["validity"]["valid"] else 3)
    if not figs["validity"]["valid"]:
        assert "NOT VALID" in result.stderr
        pytest.skip(f"this machine could not keep up: {figs['validity']['problems']}")
    # 4 devices x 30 min at 300 s: about 6 readings each (at 900 s it was 2)
    assert figs["server"]["requests"]["reading"] >= 4 * 5, figs["server"]["requests"]
    assert figs["engine"]["failed"] == 0 and figs["engine"]["on_fallback_s"] == 0
    # PV starts from zero at 11:00 and ramps: held back, but by no limit
    totals = figs["totals"]
    assert totals["ramp_kwh"] > 0
    assert totals["curtailed_kwh"] == pytest.approx(
        totals["curtailed_envelopes_kwh"] + totals["curtailed_fallback_kwh"], abs=0.02
    )
    for site in figs["per_site"]:
        assert site["curtailed_kwh"] + site["ramp_kwh"] <= site["pv_available_kwh"] + 1e-3
    report = (tmp_path / "report" / "report.md").read_text()
    assert "PV held back by the soft ramp-up" in report and "envelope recomputations" in report


def test_sim_compare_names_each_rule_prints_no_request_log_and_flags_a_lagging_run(tmp_path: Path) -> None:
    """At x100,000 no machine keeps the physics up with the clock: both runs must say NOT VALID."""
    # 5 s steps: 180 of them in the quarter hour, 50 µs of wall time each at x100,000
    scenario = _scenario(tmp_path, clock="{mode: accelerated, factor: 100000}", step_s="5")
    result = _gridshare(
        "sim", "compare", str(scenario), "--policies", "pro-rata,lifo", "--hours", "0.25", "--out", "cmp",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "tiny [pro-rata]" in result.stderr and "tiny [lifo]" in result.stderr  # not eaten as markup
    assert "HTTP Request" not in result.stderr and "HTTP/1.1" not in result.stderr
    assert " pro-rata: NOT VALID: the physics ran up to" in result.stderr
    assert "     lifo: NOT VALID: the physics ran up to" in result.stderr
    for rule in ("pro-rata", "lifo"):
        report = (tmp_path / "cmp" / rule / "report.md").read_text()
        assert "**NOT VALID: these figures do not describe the engine's envelopes.**" in report
    assert "**pro-rata: NOT VALID.**" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_a_bad_network_file_in_a_scenario_names_file_line_and_field(tmp_path: Path) -> None:
    network = tmp_path / "feeder.yaml"
    text = demo_feeder_path().read_text()
    assert "    node: f2-d\n" in text
    network.write_text(text.replace("    node: f2-d\n", "    node: f9-z\n", 1))
    line = next(i for i, row in enumerate(network.read_text().splitlines(), 1) if "node: f9-z" in row)
    scenario = _scenario(tmp_path, network="{file: feeder.yaml}")
    for command in (["sim", "run", str(scenario)], ["sim", "compare", str(scenario)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert f"network.file: {network} line {line}: sites[0].node:" in result.output, result.output
    network.write_text("name: [unclosed\n")
    result = CliRunner().invoke(main, ["sim", "run", str(scenario)])
    assert result.exit_code == 1 and "invalid YAML at line 2" in result.output, result.output
    network.unlink()
    result = CliRunner().invoke(main, ["sim", "run", str(scenario)])
    assert result.exit_code == 1 and f"network.file: cannot read {network}" in result.output, result.output
