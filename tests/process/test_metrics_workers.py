"""`gridshare serve --workers 2`: /metrics adds up the device port's requests across both processes,
and `log_format = json` makes every log line a JSON object."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port


def _count(text: str, resource: str) -> float:
    total = 0.0
    for line in text.splitlines():
        wanted = f'resource="{resource}"' in line and 'code="200"' in line
        if line.startswith("gridshare_device_requests_total{") and wanted:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_add_up_across_workers_and_logs_are_json(tmp_path: Path) -> None:
    port, operator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
    env |= {"GRIDSHARE_OPERATOR_PORT": str(operator_port), "GRIDSHARE_LOG_FORMAT": "json"}
    gridshare = Path(sys.executable).with_name("gridshare")
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            str(gridshare),
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    answered = 0
    try:
        index = tmp_path / "data" / "pki" / "clients.json"
        deadline = time.monotonic() + 180  # seeding the demo first takes a while on a busy machine
        ctx = None
        while time.monotonic() < deadline and answered == 0:
            time.sleep(0.3)
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            if not index.exists():
                continue
            pki = json.loads(index.read_text())
            device = next(c for c in pki["clients"] if c["kind"] == "device")
            ctx = ssl.create_default_context(cafile=pki["ca"])
            ctx.load_cert_chain(device["cert"], device["key"])
            try:
                answered += httpx.get(f"https://127.0.0.1:{port}/dcap", verify=ctx).status_code == 200
            except httpx.TransportError:
                continue
        assert answered == 1 and ctx is not None
        # Both workers listening (each shares its tallies once a second from its start) before the spread.
        shares_dir = tmp_path / "data" / "metrics"
        while time.monotonic() < deadline and len(list(shares_dir.glob("device-*.json"))) < 2:
            time.sleep(0.3)
        for _ in range(30):  # a new connection each: the kernel spreads them over both workers' sockets
            with httpx.Client(verify=ctx) as c:
                answered += c.get(f"https://127.0.0.1:{port}/dcap").status_code == 200
        text = ""
        for _ in range(150):
            try:
                text = httpx.get(f"http://127.0.0.1:{operator_port}/metrics").text
                if _count(text, "DeviceCapability") == answered:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert _count(text, "DeviceCapability") == answered == 31
        time.sleep(1.5)  # every worker has shared its tallies since
        shares = [json.loads(p.read_text()) for p in (tmp_path / "data" / "metrics").glob("device-*.json")]
        counted = [s["requests"].get("DeviceCapability", {}).get("200", 0) for s in shares]
        assert sum(1 for n in counted if n) >= 2, counted  # both workers answered some of them
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    lines = [line for line in (tmp_path / "serve.log").read_text().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json
    events = [json.loads(line) for line in lines]  # every line is JSON
    assert any("CSIP-AUS endpoint on" in e["message"] for e in events)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in events)
