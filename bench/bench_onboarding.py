"""How fast a fleet comes online over the wire: every device registers itself, cold, at once.

The day a feeder's fleet is commissioned, or after a wide communications outage, thousands of devices
reach the server together. Each virtual device here has its own certificate and does what a CSIP-AUS
client does on start-up, on one keep-alive mTLS connection of its own:

    GET /dcap -> POST its EndDevice (201; 409 if it is registered already) -> GET the EndDevice ->
    PUT its ConnectionPoint (NMI) -> GET FSAs -> GET DERPrograms -> GET DERControls -> POST a
    MirrorUsagePoint with its first reading

against one `gridshare serve` (SQLite by default, `--database-url` for PostgreSQL) started as a
subprocess with open registration and stopped by PID. `--concurrency` devices start at a time. Two
passes over the same fleet: "register" (nothing is known: every EndDevice and mirror is created) and
"return" (all known: the POST answers 409, the device follows its Location, or finds its own EndDevice
in the list where no Location is given, and carries on). It prints devices online per second, the
time for the whole fleet, the CPU the server and this load generator each spent per device (they
share the cores: on a small machine the load generator, one httpx client and TLS context per device,
is what limits the rate), and p50/p99 per step, and checks the store: exactly one EndDevice per
device after both passes.

    .venv/bin/python -m bench.bench_onboarding [--devices 10000] [--concurrency 64] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, select

from bench.bench_derc import scratch_database, start_server, wait_ready
from bench.proc_cpu import tree_cpu_s
from bench.pyspy import Spies
from gridshare.certs.devpki import ClientCert, create_dev_pki
from gridshare.core.settings import Settings
from gridshare.server.shared.context import build_context
from gridshare.sim import wire
from gridshare.store.models import MirrorUsagePoint, Site

STEPS = ("dcap", "register", "edev", "cp", "fsa", "derp", "derc", "mup")


@dataclass
class Tally:
    """Latencies per step (ms), failures per step and status, when each device was done, and the CPU
    seconds the server and this load generator spent on the pass (they share the machine's cores)."""

    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    registered_409: int = 0
    done: int = 0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0


async def onboard(device: ClientCert, index: int, base_url: str, ca: str, tally: Tally) -> None:
    tls = ssl.create_default_context(cafile=ca)
    tls.load_cert_chain(device.cert_path, device.key_path)
    async with httpx.AsyncClient(base_url=base_url, verify=tls, timeout=60.0) as client:

        async def call(step: str, method: str, path: str, body: bytes | None = None) -> httpx.Response:
            t0 = time.perf_counter()
            headers = {"Content-Type": wire.MEDIA_TYPE} if body is not None else None
            response = await client.request(method, path, content=body, headers=headers)
            tally.ms[step].append((time.perf_counter() - t0) * 1000.0)
            if response.status_code >= 400 and not (step == "register" and response.status_code == 409):
                tally.failures[f"{step} {response.status_code}"] += 1
                raise RuntimeError(f"{method} {path}: {response.status_code}")
            return response

        try:
            dcap = wire.device_capability(wire.parse((await call("dcap", "GET", "/dcap")).content))
            now_s = int(time.time())
            body = wire.end_device_body(device.sfdi, device.lfdi, now_s)
            answer = await call("register", "POST", dcap.edev_list, body)
            href = answer.headers.get("location")
            if answer.status_code == 409:
                tally.registered_409 += 1
                if not href:  # a server that does not say where the device's EndDevice is: look it up
                    listed = wire.end_devices(wire.parse((await call("edev", "GET", dcap.edev_list)).content))
                    href = next((d.href for d in listed if d.lfdi == device.lfdi.upper()), None)
            if not href:
                tally.failures["register: no EndDevice"] += 1
                return
            edev = wire.end_device(wire.parse((await call("edev", "GET", href)).content))
            if edev.connection_point:
                await call("cp", "PUT", edev.connection_point, wire.connection_point_body(f"B{index:09d}"))
            if edev.fsa_list:
                fsas = wire.parse((await call("fsa", "GET", edev.fsa_list)).content)
                for derp_list in wire.fsa_program_lists(fsas):
                    programs = wire.programs(wire.parse((await call("derp", "GET", derp_list)).content))
                    for program in programs:
                        await call("derc", "GET", program.control_list)
            if dcap.mup_list:
                mup = wire.mirror_usage_point_body(
                    wire.mrid_for("bench-mup", device.lfdi),
                    device.lfdi,
                    wire.mrid_for("bench-mmr", device.lfdi),
                    60,
                    now_s - now_s % 60,
                    1500.0,
                )
                await call("mup", "POST", dcap.mup_list, mup)
            tally.done += 1
        except (httpx.HTTPError, RuntimeError) as exc:
            if not isinstance(exc, RuntimeError):
                tally.failures[type(exc).__name__] += 1


async def run_pass(
    devices: list[ClientCert], base_url: str, ca: str, concurrency: int, progress: Progress, label: str
) -> tuple[Tally, float]:
    tally = Tally()
    gate = asyncio.Semaphore(concurrency)
    task = progress.add_task(label, total=len(devices))

    async def one(i: int, d: ClientCert) -> None:
        async with gate:
            await onboard(d, i, base_url, ca, tally)
        progress.advance(task)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, d) for i, d in enumerate(devices)))
    return tally, time.perf_counter() - t0


def free_port_pair() -> int:
    """A port p with p+1 also free (device endpoint and operator API)."""
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise SystemExit("no pair of free loopback ports")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--returns", type=int, default=1, help="return passes after the registering one (1: 'return')"
    )
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a scratch directory")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of the server's passes here")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="restart the server (same store) before each return pass: returning devices whose answers "
        "no serving process has cached, as after a deploy or a crash",
    )
    args = parser.parse_args()
    if args.returns < 1:
        parser.error(f"--returns must be at least 1 (return passes after registering), got {args.returns}")
    console = Console()

    with (
        tempfile.TemporaryDirectory(prefix="gridshare-onboard-") as tmp,
        scratch_database(args.database_url) as url,
    ):
        workdir = Path(tmp)
        t0 = time.perf_counter()
        pki = create_dev_pki(workdir / "pki", devices=args.devices, aggregators=0)
        console.print(f"issued {args.devices} device certificates in {time.perf_counter() - t0:.1f} s")
        settings = Settings(
            data_dir=workdir,
            database_url=url,
            tls_ca_file=pki.ca_path,
            tls_cert_file=pki.server_cert_path,
            tls_key_file=pki.server_key_path,
        )
        port = free_port_pair()
        probe = ssl.create_default_context(cafile=str(pki.ca_path))
        probe.load_cert_chain(pki.devices[0].cert_path, pki.devices[0].key_path)

        def serve() -> subprocess.Popen[bytes]:
            started = start_server(
                settings,
                port,
                args.workers,
                {
                    "GRIDSHARE_OPEN_REGISTRATION": "true",
                    "GRIDSHARE_DEMO_NETWORK": "false",
                    "GRIDSHARE_OPERATOR_PORT": str(port + 1),
                },
            )
            try:
                wait_ready(f"https://127.0.0.1:{port}/dcap", probe, started)
            except BaseException:
                started.terminate()
                started.wait(timeout=30)
                raise
            return started

        proc = serve()
        try:
            results: list[tuple[str, Tally, float]] = []
            with Progress(console=console) as progress:
                again = [f"return {i + 1}" for i in range(args.returns)] if args.returns > 1 else ["return"]
                for label in ["register", *again]:
                    if args.restart and label != "register":
                        proc.terminate()
                        proc.wait(timeout=30)
                        proc = serve()
                    spies = Spies(proc.pid, args.profile, label.replace(" ", "-")) if args.profile else None
                    if spies is not None:
                        spies.start()
                    server_from, client_from = tree_cpu_s(proc.pid), time.process_time()
                    tally, wall_s = asyncio.run(
                        run_pass(
                            pki.devices,
                            f"https://127.0.0.1:{port}",
                            str(pki.ca_path),
                            args.concurrency,
                            progress,
                            label,
                        )
                    )
                    tally.server_cpu_s = tree_cpu_s(proc.pid) - server_from
                    tally.client_cpu_s = time.process_time() - client_from
                    if spies is not None:
                        spies.stop()
                    results.append((label, tally, wall_s))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

        ctx = build_context(settings.model_copy(update={"demo_network": False}))
        with ctx.sessions() as session:
            sites = session.execute(select(func.count(Site.id))).scalar_one()
            mups = session.execute(select(func.count(MirrorUsagePoint.id))).scalar_one()
        ctx.engine.dispose()

    db = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    title = (
        f"{args.devices} devices coming online, {args.concurrency} at a time, {args.workers} worker(s), {db}"
        + (", server restarted before each return" if args.restart else "")
    )
    table = Table(title=title)
    table.add_column("")
    for label, _, _ in results:
        table.add_column(label, justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("online", [str(t.done) for _, t, _ in results]),
        ("wall s", [f"{w:.1f}" for _, _, w in results]),
        ("devices/s", [f"{t.done / w:.0f}" for _, t, w in results]),
        ("server CPU ms/device", [f"{1000 * t.server_cpu_s / max(t.done, 1):.1f}" for _, t, _ in results]),
        (
            "load generator CPU ms/device",
            [f"{1000 * t.client_cpu_s / max(t.done, 1):.1f}" for _, t, _ in results],
        ),
        ("registration 409s", [str(t.registered_409) for _, t, _ in results]),
        (
            "failures",
            [", ".join(f"{k}: {v}" for k, v in sorted(t.failures.items())) or "0" for _, t, _ in results],
        ),
    ]
    for step in STEPS:
        rows.append(
            (
                f"{step} p50/p99 ms",
                [f"{pct(t.ms[step], 50):.0f} / {pct(t.ms[step], 99):.0f}" for _, t, _ in results],
            )
        )
    for name, cells in rows:
        table.add_row(name, *cells)
    console.print(table)
    console.print(
        f"store after both passes: {sites} EndDevices, {mups} MirrorUsagePoints for {args.devices} devices"
    )
    if sites != args.devices or any(t.done != args.devices for _, t, _ in results):
        raise SystemExit("not every device came online exactly once")


if __name__ == "__main__":
    main()
