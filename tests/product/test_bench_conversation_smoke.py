"""The conversation benchmark's `--quick` mode runs end to end against a real server over mutual TLS.

It is the guard that the benchmark still speaks the whole CSIP-AUS conversation GridShare serves: every
resource a device discovers answers, the returning fleet's POST gets its 409 with a Location, readings
and Responses are acknowledged, and no request is refused. Figures are not asserted (timing on a
shared machine is noise); that is what `bench/bench_conversation.py` prints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # a server, certificates and four phases: about 20 s on 2 cores

DISCOVERED = {
    "dcap",
    "edev-list",
    "register",
    "edev",
    "rg",
    "cp-put",
    "cp",
    "fsa",
    "derp",
    "derc",
    "dderc",
    "actderc",
    "dc",
    "mup-list",
    "mup-post",
    "mup",
}


def test_quick_conversation_is_answered_in_full(tmp_path: Path) -> None:
    """Directly over GridShare's own TLS, and (where nginx is installed) through deploy/nginx's front."""
    out = tmp_path / "figures.json"
    front = ["--behind-nginx"] if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else []
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_conversation",
            "--quick",
            "--no-nginx",
            *front,
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = json.loads(out.read_text())
    gridshare = [r for r in rows if r["target"].startswith("GridShare")]
    assert [r["target"] for r in gridshare] == ["GridShare SQLite"] + (
        ["GridShare SQLite behind nginx"] if front else []
    )
    for row in gridshare:
        phases = row["phases"]
        for name, phase in phases.items():
            assert phase["refused"] == {}, (row["target"], name, phase["refused"])
            assert phase["overall"]["requests"] > 0, (row["target"], name)
        assert set(phases["discovery"]["kinds"]) >= DISCOVERED
        assert {"derc", "dderc", "reading", "response"} <= set(phases["conversation"]["kinds"])
        assert phases["returning"]["completed_per_s"] > 0  # each one a 409 with a Location, then on
        assert phases["readings"]["completed_per_s"] > 0
    assert "devices/s" in run.stdout and "readings acked/s" in run.stdout
