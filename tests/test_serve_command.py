"""`gridshare serve` from a fresh data directory: dev PKI on first start, SQLite store, mTLS on loopback."""

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
from lxml import etree

from tests.conftest import free_port

NS = {"s": "urn:ieee:std:2030.5:ns"}


def test_serve_starts_on_embedded_defaults_and_stops_by_pid(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
    gridshare = Path(sys.executable).with_name("gridshare")
    proc = subprocess.Popen(
        [str(gridshare), "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        index = tmp_path / "data" / "pki" / "clients.json"
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status is None:
            time.sleep(0.2)
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            if not index.exists():
                continue
            pki = json.loads(index.read_text())
            device = next(c for c in pki["clients"] if c["kind"] == "device")
            ctx = ssl.create_default_context(cafile=pki["ca"])
            ctx.load_cert_chain(device["cert"], device["key"])
            try:
                status = httpx.get(f"https://127.0.0.1:{port}/dcap", verify=ctx).status_code
            except httpx.TransportError:
                continue
        assert status == 200
        assert (tmp_path / "data" / "gridshare.db").is_file()
        # the demo feeder is loaded, device-1 sits at one of its dynamic sites, and the engine has
        # published its envelope by the time the device looks
        deadline = time.monotonic() + 30
        controls = "0"
        while time.monotonic() < deadline and controls == "0":
            with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ctx) as c:
                edev = etree.fromstring(c.get("/edev").content)[0].get("href")
                derp = etree.fromstring(c.get(f"{edev}/fsa/1/derp").content)[0]
                derc = derp.find("s:DERControlListLink", NS).get("href")
                controls = etree.fromstring(c.get(derc).content).get("all")
            time.sleep(0.5)
        assert int(controls) > 0
        aggregator = next(c for c in pki["clients"] if c["kind"] == "aggregator")
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.load_cert_chain(aggregator["cert"], aggregator["key"])
        # the dev aggregator certificate is registered out of the box: it sees its own /edev/0
        body = httpx.get(f"https://127.0.0.1:{port}/edev/0", verify=ctx).text
        assert aggregator["lfdi"] in body
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
