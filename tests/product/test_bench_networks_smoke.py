"""The many-networks benchmark runs end to end at a tiny size: store, Dask workers, a server, devices.

It guards that the benchmark still measures what it says: every network published on every compute
path (in-process and a real `dask scheduler` with a worker), a derate's outage and its end reach a
device over mutual TLS, and the load generator's requests are all answered. Figures are not asserted
(timing on a shared machine is noise); that is what `bench/bench_networks.py` prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # a dask scheduler and worker, a server, three engines: about a minute


def test_tiny_utility_is_published_derated_and_served(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run(
        [
            sys.executable, "-m", "bench.bench_networks", "--networks", "2", "--sites", "20",
            "--modes", "inproc,1", "--trials", "1", "--devices", "2", "--connections", "2",
            "--load-seconds", "1", "--json", str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    labels = [r["label"] for r in figures["throughput"]]
    assert labels == ["first publication, in-process", "in-process", "1 dask worker(s)"]
    for r in figures["throughput"]:
        assert (r["networks"], r["sites"]) == (2, 40), r  # every network, every site, each time
    assert figures["throughput"][-1]["worker_cpu_s"] > 0  # the worker computed, not the publisher
    assert len(figures["derate"]) == 6  # three situations, an outage and its end each
    for d in figures["derate"]:
        assert d["store_s"] is not None and d["device_s"] is not None, d
    assert [s["situation"] for s in figures["serving"]] == [
        "quiet",
        "others republishing",
        "computing only (control)",
        "quiet",
    ]
    for s in figures["serving"]:
        assert s["requests"] > 0 and s["errors"] == 0, s
    assert figures["serving"][1]["sets_published"] > 0  # the other network did republish meanwhile
