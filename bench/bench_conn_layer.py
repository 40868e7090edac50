"""What the device port's connection layer costs per request: TLS, HTTP parsing, deadlines, caps.

Serves a fixed 2 KB body from a trivial ASGI app (no database, no engine) in a subprocess through
three stacks, alternating rounds, and drives each with `bench.loadgen` over mutual TLS: uvicorn's
stock path (the event loop's TLS + `PeerCertHttpProtocol`, the device port before issue 11's
limits), the loop's TLS + `GuardedHttpProtocol` (what the deadlines and caps alone cost), and
`server/listener.py` as served now (`AlertingSSLProtocol` + `GuardedHttpProtocol`).
The figure to compare is the server's CPU time per request, counted by the server itself: on a
machine shared with other work it moves far less than requests/s does, but still moves.

`--instructions` instead counts the instructions the server executes per request under valgrind's
callgrind, which is repeatable whatever else the machine is doing: each stack serves N and then 2N
sequential keep-alive requests on one connection, and (I(2N) - I(N)) / N is the cost of one request
with start-up cancelled out. Slow (valgrind runs the server ~50x slower), exact.

    .venv/bin/python -m bench.bench_conn_layer [--connections 64] [--seconds 5] [--rounds 3]
    .venv/bin/python -m bench.bench_conn_layer --instructions [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
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

from bench.serve_process import free_port

VARIANTS = ("stock", "guarded", "device")
LABELS = {
    "stock": "before: loop TLS + PeerCertHttpProtocol",
    "guarded": "loop TLS + GuardedHttpProtocol",
    "device": "now: AlertingSSLProtocol + GuardedHttpProtocol",
}
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


def _start(
    variant: str, pki_dir: Path, ctx: ssl.SSLContext
) -> tuple[subprocess.Popen[bytes], str, dict[str, float]]:
    """A `--serve variant` process on a free port, its URL and its first stats.

    A port the kernel just handed out can still be taken by another socket before the server binds
    it; a server that exits before answering is started again on another port (three tries).
    """
    for _ in range(3):
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        serve = ("--serve", variant, "--port", str(port), "--pki", str(pki_dir))
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_conn_layer", *serve],
            cwd=Path(__file__).parent.parent,
        )
        deadline = time.monotonic() + 30
        while proc.poll() is None:
            try:
                return proc, url, _stats(url, ctx)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=20)
                    raise SystemExit(f"the {variant} server did not answer within 30 s") from None
                time.sleep(0.1)
    raise SystemExit(f"the {variant} server did not start (three ports tried)")


def _round(variant: str, pki_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    from gridshare.certs.devpki import load_dev_pki

    pki = load_dev_pki(pki_dir)
    client = pki.devices[0]
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    ctx.load_cert_chain(str(client.cert_path), str(client.key_path))
    proc, url, before = _start(variant, pki_dir, ctx)
    try:
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


def _sequential_requests(port: int, ctx: ssl.SSLContext, count: int) -> None:
    """`count` GETs one after another on one keep-alive connection (a deterministic server path)."""
    request = b"GET /derc HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=600) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        for _ in range(count):
            sock.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536)
            head, _, body = buf.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += sock.recv(65536)


def _callgrind_total(variant: str, pki_dir: Path, requests: int, out: Path) -> int:
    """Instructions the server process executed in all, serving `requests` requests under callgrind."""
    from gridshare.certs.devpki import load_dev_pki

    pki = load_dev_pki(pki_dir)
    port = free_port()
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.bench_conn_layer",
            *("--serve", variant, "--port", str(port), "--pki", str(pki_dir)),
        ],
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = pki.devices[0]
        ctx = ssl.create_default_context(cafile=str(pki.ca_path))
        ctx.load_cert_chain(str(client.cert_path), str(client.key_path))
        deadline = time.monotonic() + 900
        while True:
            try:
                _sequential_requests(port, ctx, 1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the {variant} server did not start under valgrind") from None
                time.sleep(0.5)
        _sequential_requests(port, ctx, requests)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no instruction total in {out}")


def instructions(args: argparse.Namespace) -> None:
    from gridshare.certs.devpki import create_dev_pki

    console = Console()
    title = f"server instructions per 2 KB GET over mTLS keep-alive (callgrind, N={args.requests})"
    table = Table(title=title)
    for col in ("connection layer", "instructions/request"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        pki_dir = Path(tmp) / "pki"
        create_dev_pki(pki_dir, devices=1, aggregators=0)
        for variant in VARIANTS:
            totals = []
            for n in (args.requests, 2 * args.requests):
                with console.status(f"{variant}: {n} requests under callgrind"):
                    totals.append(_callgrind_total(variant, pki_dir, n, Path(tmp) / f"cg.{variant}.{n}"))
            per_request = (totals[1] - totals[0]) / args.requests
            figures = {"variant": variant, "totals": totals, "per_request": round(per_request)}
            console.print(json.dumps(figures))
            table.add_row(LABELS[variant], f"{per_request:,.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description="connection-layer cost per request, stock vs device port")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    parser.add_argument("--requests", type=int, default=300, help="N for --instructions")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.pki)
        return
    if args.instructions:
        instructions(args)
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
        f"{args.rounds} rounds of {args.seconds:g} s"
    )
    for col in ("connection layer", "CPU µs/req median", "min", "requests/s median", "p99 ms", "errors"):
        table.add_column(col, justify="right")
    for variant in VARIANTS:
        runs = rows[variant]
        cpu = [r["cpu_us_per_request"] for r in runs]
        table.add_row(
            LABELS[variant],
            f"{statistics.median(cpu):.1f}",
            f"{min(cpu):.1f}",
            f"{statistics.median(r['requests_per_s'] for r in runs):.0f}",
            f"{statistics.median(r['p99_ms'] for r in runs):.1f}",
            str(sum(int(r["errors"]) for r in runs)),
        )
    console.print(table)


if __name__ == "__main__":
    main()
