"""How big a fleet one GridShare server on this machine keeps up with, polling every 60 seconds.

Up to 10,000 virtual devices, each with its own client certificate and its own keep-alive mTLS
connection, all on loopback. Two measurements against one server process:

1. Saturation: 64 devices poll their own DERControlList back to back (bench/loadgen.py) for a few
   seconds: the sustained requests/s and the p50/p99 latency at full load.
2. Real time: N devices each poll their DERControlList once every 60 s, phases spread evenly over the
   minute, for `--stage-seconds`; N grows through `--fleets` until the server stops keeping up
   (fewer than 99 % of polls answered, or p99 latency above `--max-p99-ms`, or the generator itself
   falling behind its schedule). The largest N that kept up is the answer.

Envelope blocks start on common 5-minute boundaries, where every device's list changes status at
once: the hardest minute for the server. Each stage reports how many boundaries fell in its measured
window; `--align-boundaries` starts each stage so that one falls in the middle of it (waiting up to
five minutes), so stages compare like with like.

    .venv/bin/python -m bench.bench_fleet [--fleets 1000 2500 5000 10000] [--stage-seconds 150]
        [--align-boundaries]

The devices are bound to sites of a generated suburb (sim/feeder.py) directly in the store, then the
server publishes real envelopes for them (its envelope engine, one run); registration over the wire
is exercised by `gridshare sim run`, not here. Bounded: every stage ends after its seconds, every
connection goes to 127.0.0.1, and the script stops the server it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import queue
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bench.seeding import add_site
from gridshare.certs.devpki import create_dev_pki
from gridshare.core.settings import Settings
from gridshare.server.shared.context import build_context
from gridshare.sim.clock import SharedClock
from gridshare.sim.feeder import suburb_document
from gridshare.sim.server import ServerPlan, SpawnedServer
from gridshare.store.db import transaction
from gridshare.store.models import ClientKind, DerProgram
from gridshare.store.queries.seed import seed_baseline
from gridshare.store.scope import ClientScope

POLL_S = 60.0
PAGE = 64
#: Envelope blocks start and end on multiples of this (Settings.envelope_interval_s), in epoch seconds.
BLOCK_S = 300


def aligned_start_s(now_wall_s: float, seconds: float, earliest_delay_s: float = 2.0) -> float:
    """Wall time to start a stage so the middle of its measured window is a block boundary."""
    middle_offset_s = POLL_S + (seconds - POLL_S) / 2
    first = now_wall_s + earliest_delay_s + middle_offset_s
    boundary = -(-first // BLOCK_S) * BLOCK_S
    return boundary - middle_offset_s


def boundaries_between(start_wall_s: float, end_wall_s: float) -> int:
    """Block boundaries in [start, end): the moments every cached list changes status at once."""
    return int(-(-end_wall_s // BLOCK_S) - -(-start_wall_s // BLOCK_S))


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def prepare(workdir: Path, devices: int, console: Console) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Certificates, a suburb of `devices` sites, and one store site per device bound by NMI."""
    t0 = time.perf_counter()
    pki = create_dev_pki(workdir / "pki", devices=devices, aggregators=0)
    console.print(f"issued {devices} device certificates in {time.perf_counter() - t0:.1f} s")
    doc = suburb_document(sites=devices, transformers=max(devices // 10, 1))
    settings = Settings(
        data_dir=workdir,
        tls_ca_file=pki.ca_path,
        tls_cert_file=pki.server_cert_path,
        tls_key_file=pki.server_key_path,
        demo_network=False,
    )
    ctx = build_context(settings)
    seed_baseline(ctx)
    now = ctx.now_s()
    clients: list[dict[str, str]] = []
    with transaction(ctx.sessions) as session:
        program = session.execute(select(DerProgram)).scalars().first()
        for cert, site_doc in zip(pki.devices, doc["sites"], strict=True):
            scope = ClientScope(ClientKind.device, cert.lfdi, cert.sfdi)
            site = add_site(session, scope, cert.lfdi, cert.sfdi, now)
            site.nmi = site_doc["nmi"]
            session.flush()
            clients.append(
                {
                    "lfdi": cert.lfdi,
                    "cert": str(cert.cert_path),
                    "key": str(cert.key_path),
                    "path": f"/edev/{site.id}/derp/{program.id}/derc?l={PAGE}",
                }
            )
    ctx.engine.dispose()
    return {"doc": doc, "pki": pki}, clients


# --- the real-time generator (its own process) ---------------------------------------------------


async def _device(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    path: str,
    first_s: float,
    end_s: float,
    out: dict[str, list[float]],
) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/sep+xml\r\n\r\n".encode()
    await asyncio.sleep(max(first_s - time.monotonic(), 0.0))
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
    except OSError:
        out["connect_errors"].append(1.0)
        return
    k = 0
    try:
        while True:
            due = first_s + k * POLL_S
            if due >= end_s:
                return
            await asyncio.sleep(max(due - time.monotonic(), 0.0))
            sent = time.monotonic()
            out["lateness"].append(sent - due)
            out["due"].append(due)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            done = time.monotonic()
            out["latency"].append(done - sent if head.startswith(b"HTTP/1.1 200") else -1.0)
            k += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        out["errors"].append(0.0)
    finally:
        writer.close()


async def _fleet(args: dict[str, Any]) -> dict[str, Any]:
    clients = args["clients"]
    n = len(clients)
    contexts = []
    for c in clients:  # before the clock starts: loading 10,000 keys takes seconds
        ctx = ssl.create_default_context(cafile=args["ca"])
        ctx.load_cert_chain(c["cert"], c["key"])
        contexts.append(ctx)
    wall_minus_mono_s = time.time() - time.monotonic()
    start = time.monotonic() + 2.0
    if args.get("align"):
        start = aligned_start_s(time.time(), args["seconds"]) - wall_minus_mono_s
    end = start + args["seconds"]
    out: dict[str, list[float]] = {
        "latency": [],
        "errors": [],
        "lateness": [],
        "due": [],
        "connect_errors": [],
    }
    tasks = []
    for i, (c, ctx) in enumerate(zip(clients, contexts, strict=True)):
        tasks.append(
            asyncio.create_task(
                _device("127.0.0.1", args["port"], ctx, c["path"], start + POLL_S * i / n, end, out)
            )
        )
    await asyncio.wait(tasks, timeout=end - time.monotonic() + 60)
    # Measure polls due after the first minute: by then every device has connected once.
    steady = start + POLL_S
    boundaries = boundaries_between(steady + wall_minus_mono_s, end + wall_minus_mono_s)
    pairs = [(d, x) for d, x in zip(out["due"], out["latency"], strict=False) if d >= steady]
    lat = np.array([x for _, x in pairs if x >= 0])
    failed = sum(1 for _, x in pairs if x < 0)
    # how late the generator sent each steady-state poll: it must keep its own schedule to be fair
    late = np.array([x for d, x in zip(out["due"], out["lateness"], strict=False) if d >= steady])
    expected = 0
    for i in range(n):
        first = start + POLL_S * i / n
        k_min = max(int(np.ceil((steady - first) / POLL_S)), 0)
        k_max = int(np.ceil((end - first) / POLL_S)) - 1
        expected += max(k_max - k_min + 1, 0)
    return {
        "devices": n,
        "answered": len(lat),
        "expected": int(expected),
        "errors": failed + len(out["errors"]) + len(out["connect_errors"]),
        "requests_per_s": round(len(lat) / max(end - steady, 1e-9), 1),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1) if len(lat) else None,
        "late_p99_ms": round(float(np.percentile(late, 99)) * 1000, 1) if len(late) else None,
        "block_boundaries_measured": boundaries,
    }


def _generator(args: dict[str, Any], replies: Any) -> None:
    raise_fd_limit()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    replies.put(asyncio.run(_fleet(args)))


def realtime_stage(
    clients: list[dict[str, str]], ca: str, port: int, seconds: float, align: bool = False
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    replies = ctx.Queue()
    args = {"clients": clients, "ca": ca, "port": port, "seconds": seconds, "align": align}
    proc = ctx.Process(target=_generator, args=(args, replies))
    proc.start()
    deadline = time.monotonic() + seconds + 180 + (BLOCK_S if align else 0)
    while True:
        try:
            result = replies.get(timeout=1.0)
            break
        except queue.Empty:
            if not proc.is_alive() or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"the load generator failed (exit code {proc.exitcode})") from None
    proc.join(timeout=30)
    return result


def saturation(
    clients: list[dict[str, str]], workdir: Path, ca: str, port: int, seconds: float
) -> dict[str, Any]:
    index = workdir / "loadgen-clients.json"
    index.write_text(json.dumps({"clients": [{"kind": "device", **c} for c in clients[:64]]}))
    targets = workdir / "loadgen-targets.json"
    targets.write_text(json.dumps({c["lfdi"]: c["path"] for c in clients[:64]}))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            f"https://127.0.0.1:{port}/",
            "--ca",
            ca,
            "--clients",
            str(index),
            "--targets",
            str(targets),
            "--connections",
            str(min(64, len(clients))),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def keeps_up(r: dict[str, Any], max_p99_ms: float) -> bool:
    return (
        r["expected"] > 0
        and r["answered"] >= 0.99 * r["expected"]
        and r["p99_ms"] is not None
        and r["p99_ms"] <= max_p99_ms
        and (r["late_p99_ms"] or 0) <= 1000
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Largest fleet one server keeps up with at 60-second polling"
    )
    parser.add_argument("--fleets", type=int, nargs="+", default=[1000, 2500, 5000, 10000])
    parser.add_argument("--stage-seconds", type=float, default=150.0)
    parser.add_argument("--saturation-seconds", type=float, default=15.0)
    parser.add_argument("--max-p99-ms", type=float, default=1000.0)
    parser.add_argument(
        "--align-boundaries",
        action="store_true",
        help="start each stage so a 5-minute envelope block boundary falls in its measured window",
    )
    args = parser.parse_args()
    if max(args.fleets) > 10_000:
        raise SystemExit("at most 10,000 virtual devices on this machine")
    raise_fd_limit()
    console = Console()
    devices = max(args.fleets)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gridshare-bench-fleet-") as tmp:
        workdir = Path(tmp)
        with console.status(f"preparing {devices} devices"):
            prepared, clients = prepare(workdir, devices, console)
        pki = prepared["pki"]
        clock = SharedClock(time.time(), 1.0)
        clock.run()
        plan = ServerPlan(
            data_dir=workdir,
            port=20000 + int(time.time()) % 20000,
            pki_dir=pki.directory,
            network_doc=prepared["doc"],
            policy="pro-rata",
            recompute_interval_s=10**9,  # one publication, then the store stays still
            # six hours of envelopes are plenty for a run of minutes, and a quarter of the compute
            settings={
                "poll_rates_s": {"derp": int(POLL_S)},
                "envelope_horizon_s": 6 * 3600,
                "recompute_budget_s": 3600,
            },
        )
        server = SpawnedServer(plan, clock)
        server.start()
        try:
            outcome = server.recompute("bench", timeout_s=1800)
            if outcome["status"] != "published":
                raise SystemExit(f"the server did not publish envelopes: {outcome}")
            console.print(
                f"published envelopes for {devices} sites: {outcome['status']}, "
                f"compute {outcome['compute_s']} s, publish {outcome['publish_s']} s"
            )
            sat = saturation(clients, workdir, str(pki.ca_path), plan.port, args.saturation_seconds)
            console.print(f"saturation (64 devices back to back): {json.dumps(sat)}")
            largest = 0
            for n in sorted(args.fleets):
                with console.status(
                    f"{n} devices polling every {POLL_S:.0f} s for {args.stage_seconds:.0f} s"
                ):
                    r = realtime_stage(
                        clients[:n], str(pki.ca_path), plan.port, args.stage_seconds, args.align_boundaries
                    )
                r["keeps_up"] = keeps_up(r, args.max_p99_ms)
                results.append(r)
                console.print(json.dumps(r))
                if not r["keeps_up"]:
                    break
                largest = n
        finally:
            server.stop()
    table = Table(
        title=f"Real-time fleets polling their DERControlList every {POLL_S:.0f} s (own mTLS connection each)"
    )
    for col in (
        "devices",
        "answered/expected",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "late p99 ms",
        "errors",
        "boundaries",
        "keeps up",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            str(r["devices"]),
            f"{r['answered']}/{r['expected']}",
            str(r["requests_per_s"]),
            str(r["p50_ms"]),
            str(r["p99_ms"]),
            str(r["late_p99_ms"]),
            str(r["errors"]),
            str(r["block_boundaries_measured"]),
            "yes" if r["keeps_up"] else "no",
        )
    console.print(table)
    console.print(
        f"saturation: {sat['requests_per_s']} requests/s, p50 {sat['p50_ms']} ms, p99 {sat['p99_ms']} ms; "
        f"largest fleet that kept up with {POLL_S:.0f}-second polling: {largest or 'none tried'} devices"
        f" (the saturation figure is the cached hot path; at an envelope block boundary every cached list"
        f" is re-spliced in memory, and a fleet only pays full renders when envelopes are republished)"
    )


if __name__ == "__main__":
    main()
