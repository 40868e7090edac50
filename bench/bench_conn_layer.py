"""What the device port's connection layer costs per request: TLS, HTTP parsing, deadlines, caps.

Serves a fixed 2 KB body from a trivial ASGI app (no database, no engine) in a subprocess, once
through uvicorn's stock path (the event loop's TLS + `PeerCertHttpProtocol`, as before issue 11's
connection limits) and once through `server/listener.py` (`AlertingSSLProtocol` +
`GuardedHttpProtocol`), alternating rounds, and drives each with `bench.loadgen` over mutual TLS.
The figure to compare is the server's CPU time per request, counted by the server itself: on a
machine shared with other work it moves far less than requests/s does.

    .venv/bin/python -m bench.bench_conn_layer [--connections 64] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

VARIANTS = ("stock", "guarded", "device")
_BODY = (b'<DERControlList xmlns="urn:ieee:std:2030.5:ns" all="10" results="10">' + b"x" * 2000)[:2048]


def _app() -> Any:
    served = [0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        served[0] += 1
        body = _BODY
        if scope["path"] == "/stats":
            body = json.dumps({"requests": served[0], "cpu_s": time.process_time()}).encode()
        headers = [(b"content-type", b"application/sep+xml"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def serve(variant: str, port: int, pki_dir: Path) -> None:
    """The server subprocess: one variant of the connection layer in front of the trivial app."""
    import uvicorn

    from gridshare.certs.devpki import load_dev_pki
    from gridshare.core.settings import Settings
    from gridshare.server.listener import device_config
    from gridshare.server.tls import PeerCertHttpProtocol, server_context

    pki = load_dev_pki(pki_dir)
    context = server_context(pki.server_cert_path, pki.server_key_path, pki.ca_path)
    if variant == "stock":
        config = uvicorn.Config(
            _app(),
            host="127.0.0.1",
            port=port,
            http=PeerCertHttpProtocol,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=65,
        )
        config.load()
        config.ssl = context
    elif variant == "guarded":
        settings = Settings(data_dir=pki_dir, port=port)
        config = device_config(_app(), settings, None, host="127.0.0.1", port=port)
        config.ssl = context
    else:
        settings = Settings(data_dir=pki_dir, port=port)
        config = device_config(_app(), settings, context, host="127.0.0.1", port=port)
    uvicorn.Server(config).run()


def _stats(url: str, ctx: ssl.SSLContext) -> dict[str, float]:
    return dict(httpx.get(f"{url}/stats", verify=ctx, timeout=10).json())


def _round(variant: str, pki_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    from gridshare.certs.devpki import load_dev_pki

    pki = load_dev_pki(pki_dir)
    port = 20000 + (os.getpid() * 7 + time.monotonic_ns()) % 20000
    url = f"https://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_conn_layer",
            "--serve",
            variant,
            "--port",
            str(port),
            "--pki",
            str(pki_dir),
        ],
        cwd=Path(__file__).parent.parent,
    )
    try:
        client = pki.devices[0]
        ctx = ssl.create_default_context(cafile=str(pki.ca_path))
        ctx.load_cert_chain(str(client.cert_path), str(client.key_path))
        deadline = time.monotonic() + 30
        while True:
            try:
                before = _stats(url, ctx)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the {variant} server did not start") from None
                time.sleep(0.1)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--url",
                f"{url}/derc",
                "--ca",
                str(pki.ca_path),
                "--clients",
                str(pki_dir / "clients.json"),
                "--connections",
                str(args.connections),
                "--seconds",
                str(args.seconds),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        )
        after = _stats(url, ctx)
        load = json.loads(out.stdout.strip().splitlines()[-1])
        served = after["requests"] - before["requests"] - 1
        return {
            "cpu_us_per_request": (after["cpu_s"] - before["cpu_s"]) * 1e6 / max(1, served),
            "requests_per_s": load["requests_per_s"],
            "p99_ms": load["p99_ms"],
            "errors": load["errors"],
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description="connection-layer cost per request, stock vs device port")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.pki)
        return
    from gridshare.certs.devpki import create_dev_pki

    console = Console()
    rows: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        pki_dir = Path(tmp) / "pki"
        create_dev_pki(pki_dir, devices=16, aggregators=0)
        for i in range(args.rounds):
            for variant in VARIANTS:
                with console.status(f"round {i + 1}/{args.rounds}: {variant}"):
                    result = _round(variant, pki_dir, args)
                rows[variant].append(result)
                console.print(json.dumps({"round": i + 1, "variant": variant, **result}))
    table = Table(
        title=f"2 KB GET over mTLS, trivial app, {args.connections} keep-alive connections, "
        f"{args.rounds} × {args.seconds:g} s (medians)"
    )
    for col in ("connection layer", "server CPU µs/request", "requests/s", "p99 ms", "errors"):
        table.add_column(col, justify="right")
    for variant in VARIANTS:
        runs = rows[variant]
        table.add_row(
            "uvicorn stock (loop TLS)" if variant == "stock" else "device port (listener.py)",
            f"{statistics.median(r['cpu_us_per_request'] for r in runs):.1f} min {min(r['cpu_us_per_request'] for r in runs):.1f}",
            f"{statistics.median(r['requests_per_s'] for r in runs):.0f}",
            f"{statistics.median(r['p99_ms'] for r in runs):.1f}",
            str(sum(int(r["errors"]) for r in runs)),
        )
    console.print(table)


if __name__ == "__main__":
    main()
