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

from tests.support.servers import free_port

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


def _wait_for_line(log: Path, proc: subprocess.Popen[bytes], needle: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if needle in text:
            return text
        assert proc.poll() is None, text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not logged within {timeout_s} s:\n{log.read_text()}")


def test_the_start_log_says_what_was_created_and_how_to_get_a_token(tmp_path: Path) -> None:
    """A first start names the new schema, the generated PKI and the exact command for an operator token."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
    env["GRIDSHARE_OPERATOR_PORT"] = str(free_port())
    gridshare = Path(sys.executable).with_name("gridshare")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(gridshare), "serve", "--port", str(free_port()), "--data-dir", str(data)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_line(log, proc, "operator API token")
        text = _wait_for_line(log, proc, "changes checked every")  # the notifier starts after
        assert "created the database schema (revision " in text
        assert "database schema is current" not in text
        assert f"generated a development PKI in {data.resolve() / 'pki'}" in text
        assert "device certificates device-1, device-2" in text
        assert "changes checked every 0.25 s" in text
        assert "within 2 s of an operator change" in text
        hint = "no operator API token yet; create one with: "
        command = next(line.split(hint, 1)[1] for line in text.splitlines() if hint in line)
        assert command == f"gridshare admin token create --role operator --data-dir {data.resolve()}"
        # the command works as printed, from any folder
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        argv = command.split()
        made = subprocess.run(
            [str(gridshare), *argv[1:]], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
        )
        assert made.returncode == 0, made.stderr
        listed = subprocess.run(
            [str(gridshare), "admin", "token", "list", "--data-dir", str(data)],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "\toperator\tactive" in listed.stdout
        assert not (elsewhere / "gridshare-data").exists()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
