"""The whole CSIP-AUS device conversation at full speed, per resource, against GridShare and its limits.

Every virtual device has its own dev-PKI certificate and one keep-alive mutual-TLS connection. It
first discovers what a CSIP-AUS client discovers (walking the links the server gives, as
`sim/agent.py` does): DeviceCapability -> EndDeviceList -> EndDevice (POSTing its registration,
answered 409 with a Location because it is registered already) -> Registration -> ConnectionPoint
(PUT its NMI, read back) -> FunctionSetAssignmentsList -> DERProgramList -> DERControlList,
DefaultDERControl, ActiveDERControlList, DERCurveList -> MirrorUsagePointList -> POST its
MirrorUsagePoint -> read the mirror's postRate. Then four closed-loop phases, each device sending its
next request as soon as the previous answer is in (time compressed until the server saturates):

- discovery: the discovery sequence above, over and over;
- conversation: one cycle of what the simulator's device does between two DeviceCapability polls, at
  the rates the server advertised (DERControlList + DefaultDERControl every DERProgramList pollRate,
  FSA -> DERProgram -> schedule every FSA pollRate, DeviceCapability + mirror every DeviceCapability
  pollRate, a MirrorMeterReading every mirror postRate, and the DERControlResponses its controls'
  responseRequired bits ask for: "received", "started", "completed", IEEE 2030.5 Response function set),
  in time order, over and over;
- returning: the fleet coming back after an outage: DeviceCapability, POST EndDevice (409 with
  Location), GET that EndDevice, PUT ConnectionPoint: devices re-registered per second;
- readings: MirrorMeterReading posts only: readings acknowledged per second.
- polls (only with `--phases polls`): the conversation cycle's GETs without its writes: what the cached polls
  alone cost.

Targets: `gridshare serve` on SQLite and PostgreSQL with 1 and 2 workers (store seeded by
`bench.bench_derc.prepare`: every device registered, 10 DOE controls each); the limit, nginx serving
the bodies GridShare answered with, captured once, from memory over the same mutual TLS; with
`--behind-nginx`, GridShare as deploy/nginx runs it (nginx terminating the mutual TLS in front of N
serving processes in proxy mode); and, with `--envoy-url`, the reference server bsgip/envoy (see
docs/bench-conversation.md for how to start it).
The server's own CPU time per request is read from /proc, and `--profile DIR` records py-spy
profiles of the server during the returning phase.

    .venv/bin/python -m bench.bench_conversation [--devices 50] [--seconds 8]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--workers 1 2] [--no-nginx]
        [--behind-nginx]
        [--envoy-url https://127.0.0.1:8443 --envoy-ca ca.pem --envoy-clients clients.json]
    .venv/bin/python -m bench.bench_conversation --quick      # a few seconds: the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from lxml import etree
from rich.console import Console
from rich.table import Table
from sqlalchemy import update

from bench.bench_derc import prepare, scratch_database, start_server, wait_ready
from bench.bench_fleet import raise_fd_limit
from bench.bench_onboarding import free_port_pair
from bench.proc_cpu import tree_cpu_s
from bench.pyspy import Spies
from gridshare.core.settings import Settings
from gridshare.server.shared.context import build_context
from gridshare.server.tls import TLS12_CIPHERS
from gridshare.sim import wire
from gridshare.store.db import transaction
from gridshare.store.models import DerControl

PHASES = ("discovery", "conversation", "returning", "readings", "polls")
#: What runs unless --phases says otherwise ("polls" isolates the conversation's cached GETs).
DEFAULT_PHASES = ("discovery", "conversation", "returning", "readings")
#: With --returning-reconnects: the phases whose every pass opens a new connection.
RECONNECT = ("returning",)
#: Resources in the order a device meets them (the rows of every table).
KINDS = (
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
    "reading",
    "response",
)
OK_GET = (200,)
OK_WRITE = (200, 201, 204)


class ConversationError(RuntimeError):
    """The server answered, but not as a CSIP-AUS client expects."""


# --- one keep-alive mutual-TLS connection --------------------------------------------------------


class Conn:
    """HTTP/1.1 over one keep-alive mTLS connection, reopened if the server closes it."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.tls, server_hostname="localhost", limit=1 << 20
        )
        self.opened += 1

    async def call(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/sep+xml\r\n"
        if body is not None:
            head += f"Content-Type: application/sep+xml\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        data = await self.reader.readexactly(length) if length else b""
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- what one device says, learned by discovery --------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One request of the conversation; `body` is built when sent (readings carry the time)."""

    kind: str
    method: str
    path: str
    body: Callable[[], bytes] | None = None
    ok: tuple[int, ...] = OK_GET
    #: sent next when this answer names no Location (a 409 from a server that does not say where the
    #: registered EndDevice is: the device then finds itself in the EndDeviceList, as sim/agent.py does)
    if_no_location: Step | None = None


@dataclass
class Plan:
    """One device's conversation, in the hrefs its server gave it."""

    lfdi: str
    discovery: list[Step] = field(default_factory=list)
    cycle: list[Step] = field(default_factory=list)
    returning: list[Step] = field(default_factory=list)
    readings: list[Step] = field(default_factory=list)
    rates_s: dict[str, int] = field(default_factory=dict)

    def steps(self, phase: str) -> list[Step]:
        return {
            "discovery": self.discovery,
            "conversation": self.cycle,
            "returning": self.returning,
            "readings": self.readings,
            "polls": [s for s in self.cycle if s.method == "GET"],
        }[phase]


@dataclass
class Device:
    lfdi: str
    sfdi: int
    cert: str
    key: str
    nmi: str


@dataclass
class Tally:
    """Latencies (s) per resource kind, refusals per (kind, status), sequences completed."""

    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    refused: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    recording: bool = True
    captured: dict[tuple[str, str], tuple[int, str | None, bytes]] | None = None

    def add(self, kind: str, seconds: float) -> None:
        if self.recording:
            self.ms[kind].append(seconds)


async def send(conn: Conn, step: Step, tally: Tally) -> tuple[int, dict[str, str], bytes]:
    body = step.body() if step.body is not None else None
    t0 = time.perf_counter()
    status, headers, data = await conn.call(step.method, step.path, body)
    tally.add(step.kind, time.perf_counter() - t0)
    if tally.captured is not None:
        tally.captured[(step.method, step.path.split("?", 1)[0])] = (status, headers.get("location"), data)
    if status not in step.ok:
        if tally.recording:
            tally.refused[f"{step.kind} {status}"] += 1
        raise ConversationError(f"{step.method} {step.path}: HTTP {status} {data[:200]!r}")
    return status, headers, data


def _href(root: Any, tag: str) -> str | None:
    el = root.find(f".//{{*}}{tag}")
    return None if el is None else el.get("href")


def _rate(root: Any, default_s: int) -> int:
    return int(root.get("pollRate") or default_s)


async def discover(conn: Conn, dev: Device, tally: Tally) -> Plan:
    """Walk the server's links as a CSIP-AUS client does; return the device's conversation."""
    plan = Plan(dev.lfdi)
    steps = plan.discovery

    async def get(kind: str, path: str) -> Any:
        step = Step(kind, "GET", path)
        steps.append(step)
        return etree.fromstring((await send(conn, step, tally))[2])

    dcap = await get("dcap", "/dcap")
    edev_list, mup_list = _href(dcap, "EndDeviceListLink"), _href(dcap, "MirrorUsagePointListLink")
    if not edev_list or not mup_list:
        raise ConversationError("DeviceCapability lacks an EndDeviceListLink or MirrorUsagePointListLink")
    dcap_s = _rate(dcap, 900)
    listed = await get("edev-list", f"{edev_list}?s=0&l=64")
    edev = next(
        (
            e.get("href")
            for e in listed.iter("{*}EndDevice")
            if (e.findtext("{*}lFDI") or "").upper() == dev.lfdi.upper()
        ),
        None,
    )
    now = int(time.time())
    register = Step(
        "register",
        "POST",
        edev_list,
        lambda: wire.end_device_body(dev.sfdi, dev.lfdi, now),
        (201, 409),
        Step("edev-list", "GET", f"{edev_list}?s=0&l=64"),
    )
    steps.append(register)
    _, headers, _ = await send(conn, register, tally)
    edev = edev or headers.get("location")
    if not edev:
        raise ConversationError("the EndDevice is neither listed nor named by the registration's Location")
    ed = await get("edev", edev)
    cp = _href(ed, "ConnectionPointLink")
    rg, fsa_list = _href(ed, "RegistrationLink"), _href(ed, "FunctionSetAssignmentsListLink")
    if rg:
        await get("rg", rg)
    cp_put = None
    if cp:
        cp_put = Step("cp-put", "PUT", cp, lambda: wire.connection_point_body(dev.nmi), OK_WRITE)
        steps.append(cp_put)
        await send(conn, cp_put, tally)
        await get("cp", cp)
    if not fsa_list:
        raise ConversationError(f"{edev} has no FunctionSetAssignmentsListLink")
    fsa = await get("fsa", f"{fsa_list}?s=0&l=20")
    fsa_s, derp_s = _rate(fsa, 900), 300
    schedule: list[Step] = []
    programs: list[Step] = [Step("fsa", "GET", f"{fsa_list}?s=0&l=20")]
    controls: list[tuple[str, str, int, int]] = []  # mRID, replyTo, responseRequired, duration
    for derp_list in [e.get("href") for e in fsa.iter("{*}DERProgramListLink")]:
        derps = await get("derp", f"{derp_list}?s=0&l=20")
        derp_s = _rate(derps, derp_s)
        programs.append(Step("derp", "GET", f"{derp_list}?s=0&l=20"))
        for program in derps.iter("{*}DERProgram"):
            for kind, tag, query in (
                ("derc", "DERControlListLink", "?s=0&l=64"),
                ("dderc", "DefaultDERControlLink", ""),
                ("actderc", "ActiveDERControlListLink", "?s=0&l=64"),
                ("dc", "DERCurveListLink", "?s=0&l=64"),
            ):
                link = _href(program, tag)
                if not link:
                    continue
                got = await get(kind, link + query)
                if kind in ("derc", "dderc"):
                    schedule.append(Step(kind, "GET", link + query))
                if kind == "derc":
                    for c in got.iter("{*}DERControl"):
                        duration = int(c.findtext("{*}interval/{*}duration") or 300)
                        controls.append(
                            (
                                c.findtext("{*}mRID") or "",
                                c.get("replyTo") or "",
                                int(c.get("responseRequired") or 0),
                                duration,
                            )
                        )
    programs.extend(schedule)
    await get("mup-list", f"{mup_list}?s=0&l=20")
    mmr = wire.mrid_for("bench-mmr", dev.lfdi)
    mirror = Step(
        "mup-post",
        "POST",
        mup_list,
        lambda: wire.mirror_usage_point_body(
            wire.mrid_for("bench-mup", dev.lfdi), dev.lfdi, mmr, 60, now - 120, 1500.0
        ),
        OK_WRITE,
    )
    steps.append(mirror)
    _, headers, _ = await send(conn, mirror, tally)
    mup = headers.get("location")
    if not mup:
        raise ConversationError("the MirrorUsagePoint was created without a Location")
    mirror_s = int(
        etree.fromstring((await send(conn, Step("mup", "GET", mup), tally))[2]).findtext("{*}postRate") or 900
    )
    steps.append(Step("mup", "GET", mup))

    def reading() -> bytes:
        t = int(time.time())
        return wire.meter_reading_body(mmr, t - 60, 60, 1500.0)

    post = Step("reading", "POST", mup, reading, OK_WRITE)
    plan.rates_s = {"dcap": dcap_s, "fsa": fsa_s, "derp": derp_s, "mirror_post": mirror_s}
    plan.cycle = conversation_cycle(
        plan.rates_s,
        schedule,
        programs,
        [Step("dcap", "GET", "/dcap"), Step("mup", "GET", mup)],
        post,
        responses(dev, controls),
    )
    plan.returning = [Step("dcap", "GET", "/dcap"), register, Step("edev", "GET", edev)] + (
        [cp_put] if cp_put else []
    )
    plan.readings = [post]
    return plan


def responses(dev: Device, controls: list[tuple[str, str, int, int]]) -> tuple[list[Step], float]:
    """The DERControlResponses one control's life owes (by its responseRequired bits), and its length."""
    owed: list[Step] = []
    durations = [d for *_, d in controls] or [300]
    for mrid, reply_to, rr, _ in controls[:1]:
        if not reply_to:
            continue
        statuses = ([1] if rr & 1 else []) + ([2, 3] if rr & 2 else [])
        for status in statuses:
            owed.append(
                Step(
                    "response",
                    "POST",
                    reply_to,
                    lambda s=status, m=mrid: wire.response_body(m, dev.lfdi, s, int(time.time())),
                    OK_WRITE,
                )
            )
    return owed, float(np.mean(durations))


def conversation_cycle(
    rates_s: dict[str, int],
    schedule: list[Step],
    programs: list[Step],
    dcap: list[Step],
    post: Step,
    owed: tuple[list[Step], float],
) -> list[Step]:
    """What the simulator's device sends between two DeviceCapability polls, in time order.

    `sim/agent.py` runs four timers: the schedule every DERProgramList pollRate, the programs every
    FSA pollRate, DeviceCapability (and the mirror's rate) every DeviceCapability pollRate, readings
    every mirror postRate; each control owes its Responses once, and a new control starts every
    control duration (the DOE blocks are back to back).
    """
    cycle_s = max(rates_s["dcap"], rates_s["fsa"], rates_s["derp"], rates_s["mirror_post"])
    timed: list[tuple[float, int, list[Step]]] = []
    for order, (every_s, steps) in enumerate(
        (
            (rates_s["derp"], schedule),
            (rates_s["fsa"], programs),
            (rates_s["dcap"], dcap),
            (rates_s["mirror_post"], [post]),
        )
    ):
        for k in range(max(1, round(cycle_s / every_s))):
            timed.append((k * every_s + order, order, steps))
    per_control, control_s = owed
    if per_control:
        for k in range(max(1, round(cycle_s / control_s))):
            timed.append((k * control_s + 10, 9, per_control))
    return [s for _, _, steps in sorted(timed, key=lambda x: (x[0], x[1])) for s in steps]


# --- running a phase ----------------------------------------------------------------------------


def device_tls(ca: str, dev: Device) -> ssl.SSLContext:
    tls = ssl.create_default_context(cafile=ca)
    tls.load_cert_chain(dev.cert, dev.key)
    return tls


async def _loop(
    conn: Conn, steps: list[Step], stop_at: float, tally: Tally, offset: int, reconnect: bool = False
) -> None:
    """The steps over and over, from `offset`: devices start spread over the sequence, so the mix is
    right from the first second even when one pass takes a device longer than the phase."""
    steps = steps[offset % len(steps) :] + steps[: offset % len(steps)]
    while time.monotonic() < stop_at:
        if reconnect:  # each pass on a fresh connection: a full mutual-TLS handshake, as after an outage
            conn.close()
        try:
            for step in steps:
                _, headers, _ = await send(conn, step, tally)
                if step.if_no_location is not None and "location" not in headers:
                    await send(conn, step.if_no_location, tally)
            if tally.recording:
                tally.completed += 1
        except ConversationError:
            await asyncio.sleep(0)
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.refused[f"connection {type(exc).__name__}"] += 1
            conn.close()
            await asyncio.sleep(0.05)


async def run_phases(
    host: str,
    port: int,
    ca: str,
    devices: list[Device],
    phases: tuple[str, ...],
    seconds: float,
    warmup_s: float,
    plans: list[Plan] | None = None,
    on_phase: Callable[[str, str], None] | None = None,
    capture: bool = False,
    reconnect: tuple[str, ...] = (),
) -> tuple[list[Plan], dict[str, dict[str, Any]], dict[tuple[str, str], tuple[int, str | None, bytes]]]:
    """Discover (unless `plans` are given), then each closed-loop phase for `seconds` after a warm-up."""
    conns = [Conn(host, port, device_tls(ca, d)) for d in devices]
    first = Tally()
    if plans is None:
        plans = list(
            await asyncio.gather(*(discover(c, d, first) for c, d in zip(conns, devices, strict=True)))
        )
    captured: dict[tuple[str, str], tuple[int, str | None, bytes]] = {}
    if capture:  # every request of every phase once, to serve their bodies from nginx
        for conn, plan in zip(conns, plans, strict=True):
            tally = Tally(captured=captured)
            for phase in phases:
                for step in plan.steps(phase):
                    with contextlib.suppress(ConversationError):
                        await send(conn, step, tally)
    results: dict[str, dict[str, Any]] = {}
    for phase in phases:
        tally = Tally(recording=False)
        t0 = time.monotonic()
        stop_at = t0 + warmup_s + seconds
        if on_phase is not None:
            on_phase(phase, "start")
        loops = [
            asyncio.create_task(
                _loop(
                    c,
                    p.steps(phase),
                    stop_at,
                    tally,
                    i * len(p.steps(phase)) // len(plans),
                    phase in reconnect,
                )
            )
            for i, (c, p) in enumerate(zip(conns, plans, strict=True))
        ]
        await asyncio.sleep(warmup_s)
        tally.recording = True
        measured_from = time.monotonic()
        if on_phase is not None:
            on_phase(phase, "measure")
        await asyncio.sleep(max(stop_at - time.monotonic(), 0.0))
        tally.recording = False
        measured_s = time.monotonic() - measured_from
        if on_phase is not None:
            on_phase(phase, "end")
        await asyncio.wait(loops, timeout=30)
        results[phase] = summarize(tally, measured_s)
    for conn in conns:
        conn.close()
    return plans, results, captured


def summarize(tally: Tally, seconds: float) -> dict[str, Any]:
    def figures(values: list[float]) -> dict[str, float]:
        a = np.array(values)
        return {
            "requests": len(a),
            "requests_per_s": round(len(a) / seconds, 1),
            "p50_ms": round(float(np.percentile(a, 50)) * 1000, 2) if len(a) else float("nan"),
            "p99_ms": round(float(np.percentile(a, 99)) * 1000, 2) if len(a) else float("nan"),
        }

    everything = [x for v in tally.ms.values() for x in v]
    return {
        "seconds": round(seconds, 2),
        "kinds": {k: figures(v) for k, v in tally.ms.items()},
        "overall": figures(everything),
        "completed_per_s": round(tally.completed / seconds, 1),
        "refused": dict(tally.refused),
    }


# --- the server's CPU time ----------------------------------------------------------------------


class CpuMeter:
    """Counts the server's CPU seconds over each phase's measured window; optionally runs py-spy."""

    def __init__(
        self, pid: int, profile_dir: Path | None, label: str, profile_phase: str = "returning"
    ) -> None:
        self.pid, self.profile_dir, self.label, self.profile_phase = pid, profile_dir, label, profile_phase
        self.cpu_s: dict[str, float] = {}
        self._from = 0.0
        self._spies: Spies | None = None

    def __call__(self, phase: str, moment: str) -> None:
        if moment == "measure":
            self._from = tree_cpu_s(self.pid)
            if self.profile_dir is not None and phase == self.profile_phase:
                self._spies = Spies(self.pid, self.profile_dir, self.label)
                self._spies.start()
        elif moment == "end":
            self.cpu_s[phase] = tree_cpu_s(self.pid) - self._from
            if self._spies is not None:
                self._spies.stop()
                self._spies = None


# --- targets -------------------------------------------------------------------------------------


def devices_of(pki_dir: Path, lfdis: list[str] | None = None) -> list[Device]:
    clients = [
        c for c in json.loads((pki_dir / "clients.json").read_text())["clients"] if c["kind"] == "device"
    ]
    if lfdis is not None:
        clients = [c for c in clients if c["lfdi"] in lfdis]
    return [
        Device(c["lfdi"], int(c["sfdi"]), c["cert"], c["key"], f"Q{i:09d}") for i, c in enumerate(clients)
    ]


def ask_for_responses(settings: Settings) -> None:
    """Every seeded control asks for "received" and the specific Responses (responseRequired 03), as
    CSIP-AUS utility servers ask of DOE controls, so the conversation includes the device's Responses."""
    ctx = build_context(settings)
    with transaction(ctx.sessions) as session:
        session.execute(update(DerControl).values(response_required=3))
    ctx.engine.dispose()


def gridshare_runs(
    args: argparse.Namespace, workdir: Path, database_url: str, console: Console
) -> tuple[
    list[dict[str, Any]], list[Plan] | None, dict[tuple[str, str], tuple[int, str | None, bytes]], Path
]:
    settings, targets = prepare(workdir, args.devices, database_url)
    ask_for_responses(settings)
    devices = devices_of(workdir / "pki", list(targets))
    ca = str(settings.tls_ca_file)
    store = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    rows: list[dict[str, Any]] = []
    captured: dict[tuple[str, str], tuple[int, str | None, bytes]] = {}
    plans: list[Plan] | None = None
    for workers in args.workers:
        port = free_port_pair()
        proc = start_server(settings, port, workers, {"GRIDSHARE_OPERATOR_PORT": str(port + 1)})
        try:
            wait_ready(f"https://127.0.0.1:{port}/dcap", device_tls(ca, devices[0]), proc)
            meter = CpuMeter(proc.pid, args.profile, f"{store.lower()}-{workers}w", args.profile_phase)
            with console.status(f"GridShare, {store}, {workers} worker(s)"):
                plans, phases, cap = asyncio.run(
                    run_phases(
                        "127.0.0.1",
                        port,
                        ca,
                        devices,
                        tuple(args.phases),
                        args.seconds,
                        args.warmup,
                        on_phase=meter,
                        capture=not captured,
                        reconnect=RECONNECT if args.returning_reconnects else (),
                    )
                )
            captured = captured or cap
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        row = {
            "rates_s": plans[0].rates_s if plans else {},
            "target": f"GridShare {store}",
            "workers": workers,
            "phases": phases,
            "cpu_s": meter.cpu_s,
            "load": os.getloadavg(),
        }
        console.print(json.dumps(brief(row)))
        rows.append(row)
    if args.behind_nginx:
        rows.extend(proxied_runs(args, workdir, settings, devices, store, console))
    return rows, plans, captured, workdir / "pki"


def proxied_runs(
    args: argparse.Namespace,
    workdir: Path,
    settings: Settings,
    devices: list[Device],
    store: str,
    console: Console,
) -> list[dict[str, Any]]:
    """GridShare as deploy/nginx runs it: nginx terminates the devices' mutual TLS and balances over N
        `gridshare serve` processes with the serve role in proxy mode (plain HTTP on loopback, the identity
        from nginx's certificate header), one more process publishing and hosting the operator API. The
        nginx configuration is the one deploy/nginx/render.py writes, access log included. Each device walks
    its links afresh through nginx first, as in the direct runs, so both start with the same warm caches."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        console.print("nginx is not installed (apt-get install nginx): GridShare behind nginx not measured")
        return []
    rows = []
    proxy_env = {"GRIDSHARE_BEHIND_PROXY": "true", "GRIDSHARE_TRUSTED_PROXIES": "127.0.0.1/32"}
    for workers in args.workers:
        ports = [free_port_pair() for _ in range(workers)]
        procs = [
            start_server(
                settings, port, 1, {**proxy_env, "GRIDSHARE_ROLES": "serve", "GRIDSHARE_PORT": str(port)}
            )
            for port in ports
        ]
        publisher_port = free_port_pair()
        procs.append(
            start_server(
                settings,
                publisher_port,
                1,
                {
                    **proxy_env,
                    "GRIDSHARE_ROLES": "operator,publish,notify",
                    "GRIDSHARE_OPERATOR_PORT": str(publisher_port + 1),
                },
            )
        )
        front: subprocess.Popen[bytes] | None = None
        try:
            # each serving process answers before nginx sees it: nginx would mark one still starting as
            # failed and answer 502 for its fail_timeout
            for port, proc in zip(ports, procs, strict=False):
                wait_proxied_ready(port, Path(devices[0].cert).read_text(), proc)
            front_port = free_port_pair()
            front = start_front(binary, workdir / f"front-{workers}", front_port, settings, ports)
            wait_ready(
                f"https://127.0.0.1:{front_port}/dcap",
                device_tls(str(settings.tls_ca_file), devices[0]),
                front,
            )
            meters = [CpuMeter(p.pid, None, f"{store.lower()}-serve-{i}") for i, p in enumerate(procs[:-1])]
            front_meter = CpuMeter(front.pid, None, f"nginx-front-{workers}w")
            with console.status(f"GridShare behind nginx, {store}, {workers} serving process(es)"):
                walked, phases, _ = asyncio.run(
                    run_phases(
                        "127.0.0.1",
                        front_port,
                        str(settings.tls_ca_file),
                        devices,
                        tuple(args.phases),
                        args.seconds,
                        args.warmup,
                        on_phase=partial(_each, (*meters, front_meter)),
                    )
                )
        finally:
            stopping = [front, *procs] if front is not None else procs
            for proc in stopping:
                proc.send_signal(signal.SIGTERM)
            for proc in stopping:
                proc.wait(timeout=30)
        row = {
            "rates_s": walked[0].rates_s,
            "target": f"GridShare {store} behind nginx",
            "workers": workers,
            "phases": phases,
            "cpu_s": {p: sum(m.cpu_s.get(p, 0.0) for m in meters) for p in phases},
            "front_cpu_s": front_meter.cpu_s,
            "load": os.getloadavg(),
        }
        console.print(json.dumps(brief(row)))
        rows.append(row)
    return rows


def wait_proxied_ready(port: int, cert_pem: str, proc: subprocess.Popen[bytes]) -> None:
    """A serving process in proxy mode answers DeviceCapability to a request nginx would forward."""
    headers = {"X-Client-Cert": quote(cert_pem, safe="")}  # as nginx's $ssl_client_escaped_cert
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("a serving process exited during start-up")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/dcap", headers=headers).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"the serving process on port {port} did not answer within 60 s")


def start_front(
    binary: str, conf_dir: Path, port: int, settings: Settings, upstream_ports: list[int]
) -> subprocess.Popen[bytes]:
    """nginx with the configuration deploy/nginx/render.py writes, in front of `upstream_ports`."""
    rendered = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "render.py"),
            "--out",
            str(conf_dir),
            "--standalone",
            "--worker-processes",
            str(len(upstream_ports)),
            "--listen",
            f"127.0.0.1:{port}",
            "--tls-cert",
            str(settings.tls_cert_file),
            "--tls-key",
            str(settings.tls_key_file),
            "--client-ca",
            str(settings.tls_ca_file),
            *(arg for p in upstream_ports for arg in ("--upstream", f"127.0.0.1:{p}")),
        ],
        capture_output=True,
        text=True,
    )
    if rendered.returncode != 0:
        raise SystemExit(f"deploy/nginx/render.py failed: {rendered.stderr}")
    conf = ["-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e", str(conf_dir / "logs/error.log")]
    return subprocess.Popen([binary, *conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _each(meters: tuple[CpuMeter, ...], phase: str, moment: str) -> None:
    for meter in meters:
        meter(phase, moment)


def brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "target": row["target"],
        "workers": row["workers"],
        **{
            p: {
                "rps": r["overall"]["requests_per_s"],
                "p99_ms": r["overall"]["p99_ms"],
                "completed_per_s": r["completed_per_s"],
                "refused": r["refused"],
            }
            for p, r in row["phases"].items()
        },
        "load": [round(x, 2) for x in row["load"]],
        "rates_s": row.get("rates_s"),
    }


def nginx_conf(
    dir_: Path,
    port: int,
    workers: int,
    pki_dir: Path,
    captured: dict[tuple[str, str], tuple[int, str | None, bytes]],
) -> Path:
    """nginx answering every captured (method, path) with GridShare's status, Location and body."""
    by_path: dict[str, dict[str, tuple[int, str | None, bytes]]] = defaultdict(dict)
    for (method, path), answer in captured.items():
        by_path[path][method] = answer

    def text(body: bytes) -> str:
        s = body.decode()
        if "$" in s:
            raise SystemExit("a captured body holds '$', which nginx would read as a variable")
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"

    bodies = dir_ / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    locations = []
    for i, (path, methods) in enumerate(sorted(by_path.items())):
        lines = [f"        location = {path} {{"]
        fallback = methods.get("GET")
        for method, (status, location, body) in sorted(methods.items()):
            if method == "GET":
                continue
            header = f' add_header Location "{location}" always;' if location else ""
            lines.append(
                f"            if ($request_method = {method}) {{{header} return {status} {text(body)}; }}"
            )
            fallback = fallback or (status, location, body)
        assert fallback is not None
        if fallback[0] == 200:  # a GET body can be longer than an nginx parameter: served from a file
            (bodies / f"{i}.xml").write_bytes(fallback[2])
            lines.append(f"            alias {bodies / f'{i}.xml'};")
        else:
            lines.append(f"            return {fallback[0]} {text(fallback[2])};")
        lines.append("        }")
        locations.append("\n".join(lines))
    conf = dir_ / "nginx.conf"
    temp = dir_ / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f"""worker_processes {workers};
{"user root;" if os.geteuid() == 0 else ""}
daemon off;
pid {dir_}/nginx.pid;
error_log {dir_}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    default_type application/sep+xml;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    etag off;
    open_file_cache max=10000 inactive=600s;
    open_file_cache_valid 600s;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki_dir / "server.pem"};
        ssl_certificate_key {pki_dir / "server.key"};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {TLS12_CIPHERS};
        ssl_prefer_server_ciphers on;
        ssl_client_certificate {pki_dir / "ca.pem"};
        ssl_verify_client on;
        ssl_verify_depth 2;
{chr(10).join(locations)}
    }}
}}
"""
    )
    return conf


def nginx_runs(
    args: argparse.Namespace,
    workdir: Path,
    pki_dir: Path,
    plans: list[Plan],
    captured: dict[tuple[str, str], tuple[int, str | None, bytes]],
    console: Console,
) -> list[dict[str, Any]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        console.print("nginx is not installed (apt-get install nginx): no limit measured")
        return []
    from gridshare.certs.devpki import load_dev_pki

    pki = load_dev_pki(pki_dir)
    devices = devices_of(pki_dir, [p.lfdi for p in plans])
    by_lfdi = {d.lfdi: d for d in devices}
    devices = [by_lfdi[p.lfdi] for p in plans]
    rows = []
    for workers in args.workers:
        port = free_port_pair()
        dir_ = workdir / f"nginx-{workers}"
        dir_.mkdir(parents=True, exist_ok=True)
        # the dev PKI's file names, linked where the config expects them
        for name, src in (
            ("server.pem", pki.server_cert_path),
            ("server.key", pki.server_key_path),
            ("ca.pem", pki.ca_path),
        ):
            shutil.copy(src, dir_ / name)
        conf = nginx_conf(dir_, port, workers, dir_, captured)
        check = subprocess.run(
            [binary, "-t", "-p", str(dir_), "-c", str(conf)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise SystemExit(f"nginx -t failed: {check.stderr}")
        proc = subprocess.Popen(
            [binary, "-p", str(dir_), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(0.5)
            meter = CpuMeter(proc.pid, None, f"nginx-{workers}w")
            with console.status(f"nginx (captured bodies), {workers} worker(s)"):
                _, phases, _ = asyncio.run(
                    run_phases(
                        "127.0.0.1",
                        port,
                        str(pki.ca_path),
                        devices,
                        tuple(args.phases),
                        args.seconds,
                        args.warmup,
                        plans=plans,
                        on_phase=meter,
                    )
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        row = {
            "target": "nginx (captured bodies)",
            "workers": workers,
            "phases": phases,
            "cpu_s": meter.cpu_s,
            "load": os.getloadavg(),
        }
        console.print(json.dumps(brief(row)))
        rows.append(row)
    return rows


def envoy_run(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    """bsgip/envoy behind its own TLS front (started by hand, see docs/bench-conversation.md)."""
    from urllib.parse import urlsplit

    url = urlsplit(args.envoy_url)
    clients = [
        c for c in json.loads(Path(args.envoy_clients).read_text())["clients"] if c["kind"] == "device"
    ]
    devices = [
        Device(c["lfdi"], int(c["sfdi"]), c["cert"], c["key"], f"Q{i:09d}")
        for i, c in enumerate(clients[: args.devices])
    ]
    pid = int(args.envoy_pid) if args.envoy_pid else None
    meter = CpuMeter(pid, None, "envoy") if pid else None
    with console.status("envoy"):
        plans, phases, _ = asyncio.run(
            run_phases(
                url.hostname or "127.0.0.1",
                url.port or 443,
                args.envoy_ca,
                devices,
                tuple(args.phases),
                args.seconds,
                args.warmup,
                on_phase=meter,
            )
        )
    row = {
        "rates_s": plans[0].rates_s,
        "target": "envoy",
        "workers": args.envoy_workers,
        "phases": phases,
        "cpu_s": meter.cpu_s if meter else {},
        "load": os.getloadavg(),
    }
    console.print(json.dumps(brief(row)))
    return [row]


# --- tables -----------------------------------------------------------------------------------


def print_tables(rows: list[dict[str, Any]], console: Console, args: argparse.Namespace) -> None:
    for phase in args.phases:
        table = Table(
            title=f"{phase}: {args.devices} devices, one keep-alive mTLS connection each, {args.seconds:g} s"
        )
        table.add_column("resource")
        for row in rows:
            table.add_column(f"{row['target']} {row['workers']}w\nreq/s  p50/p99 ms", justify="right")
        kinds = [k for k in KINDS if any(k in r["phases"][phase]["kinds"] for r in rows)]
        for kind in [*kinds, "overall"]:
            cells = []
            for row in rows:
                r = row["phases"][phase]
                f = r["overall"] if kind == "overall" else r["kinds"].get(kind)
                cells.append(
                    "" if f is None else f"{f['requests_per_s']:.0f}  {f['p50_ms']:.1f}/{f['p99_ms']:.1f}"
                )
            table.add_row(kind, *cells)
        extra = {
            "returning": "devices/s",
            "readings": "readings acked/s",
            "conversation": "cycles/s",
            "discovery": "discoveries/s",
            "polls": "poll cycles/s",
        }
        table.add_row(extra[phase], *[f"{row['phases'][phase]['completed_per_s']:.0f}" for row in rows])
        table.add_row("server CPU ms/req", *[_ms_per_request(row, phase, "cpu_s") for row in rows])
        if any("front_cpu_s" in row for row in rows):
            table.add_row(
                "front (nginx) CPU ms/req", *[_ms_per_request(row, phase, "front_cpu_s") for row in rows]
            )
        table.add_row(
            "refused",
            *[
                ", ".join(f"{k}: {v}" for k, v in row["phases"][phase]["refused"].items()) or "0"
                for row in rows
            ],
        )
        console.print(table)
    base = [r for r in rows if r["target"].startswith("GridShare") and "front_cpu_s" not in r]
    for other in (r for r in rows if not r["target"].startswith("GridShare")):
        # envoy keeps its store in PostgreSQL: compare it with GridShare on PostgreSQL where measured
        store = "PostgreSQL" if other["target"] == "envoy" else "SQLite"
        same = [r for r in base if r["workers"] == other["workers"]] or base
        mine = next((r for r in same if store in r["target"]), same[0] if same else None)
        if mine is not None:
            print_ratio(mine, other, console, args)


def _ms_per_request(row: dict[str, Any], phase: str, key: str) -> str:
    """CPU milliseconds a request of `phase` cost the processes counted under `key`, for a table cell."""
    spent = row.get(key, {}).get(phase)
    if spent is None:
        return ""
    return f"{1000 * spent / max(row['phases'][phase]['overall']['requests'], 1):.3f}"


def _cpu_ms(row: dict[str, Any], phase: str) -> float | None:
    if phase not in row["cpu_s"]:
        return None
    return 1000 * row["cpu_s"][phase] / max(row["phases"][phase]["overall"]["requests"], 1)


def print_ratio(
    mine: dict[str, Any], other: dict[str, Any], console: Console, args: argparse.Namespace
) -> None:
    """GridShare's requests/s as a fraction of the other's, per resource; and CPU per request."""
    table = Table(
        title=f"requests/s of {mine['target']} {mine['workers']}w ÷ {other['target']} {other['workers']}w"
    )
    table.add_column("resource")
    for phase in args.phases:
        table.add_column(phase, justify="right")
    for kind in [*KINDS, "overall"]:
        cells = []
        for phase in args.phases:
            a = mine["phases"][phase]["overall" if kind == "overall" else "kinds"]
            b = other["phases"][phase]["overall" if kind == "overall" else "kinds"]
            fa = a if kind == "overall" else a.get(kind)
            fb = b if kind == "overall" else b.get(kind)
            ok = fa and fb and fb["requests_per_s"]
            cells.append(f"{fa['requests_per_s'] / fb['requests_per_s']:.3g}" if ok else "")
        if any(cells):
            table.add_row(kind, *cells)
    cells = []
    for phase in args.phases:
        a, b = _cpu_ms(mine, phase), _cpu_ms(other, phase)
        cells.append(f"{a / b:.3g}" if a is not None and b else "")
    table.add_row(f"server CPU/req, times {other['target'].split()[0]}'s", *cells)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("GRIDSHARE_TEST_PG_URL", ""),
        help="a PostgreSQL database to create a scratch database next to (default $GRIDSHARE_TEST_PG_URL)",
    )
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument(
        "--behind-nginx",
        action="store_true",
        help="also GridShare behind nginx as deploy/nginx runs it (N serving processes in proxy mode)",
    )
    parser.add_argument(
        "--profile", type=Path, help="record py-spy profiles of the server's returning phase here"
    )
    parser.add_argument(
        "--profile-phase", default="returning", choices=PHASES, help="the phase --profile records"
    )
    parser.add_argument("--envoy-url", help="e.g. https://127.0.0.1:8443 (envoy behind an mTLS front)")
    parser.add_argument("--envoy-ca")
    parser.add_argument("--envoy-clients", help="clients.json of the dev PKI whose devices envoy knows")
    parser.add_argument("--envoy-pid", help="PID of envoy's server process, to count its CPU time")
    parser.add_argument("--envoy-workers", type=int, default=1)
    parser.add_argument(
        "--returning-reconnects",
        action="store_true",
        help="each returning device opens a new mTLS connection (a full handshake) for its pass",
    )
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(DEFAULT_PHASES))
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 4 devices, SQLite, 1 worker, 1 s phases"
    )
    args = parser.parse_args()
    if args.quick:
        args.devices, args.seconds, args.warmup, args.workers, args.pg_url = 4, 1.0, 0.3, [1], ""
    raise_fd_limit()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    console = Console()
    rows: list[dict[str, Any]] = []
    urls = ([] if args.no_sqlite else [""]) + ([args.pg_url] if args.pg_url else [])
    with tempfile.TemporaryDirectory(prefix="gridshare-conv-") as tmp:
        nginx_input = None
        for i, url in enumerate(urls):
            with scratch_database(url) as database_url:
                workdir = Path(tmp) / f"store-{i}"
                workdir.mkdir()
                got, plans, captured, pki_dir = gridshare_runs(args, workdir, database_url, console)
                rows.extend(got)
                if nginx_input is None and plans is not None:
                    nginx_input = (workdir, pki_dir, plans, captured)
        if nginx_input is not None and not args.no_nginx:
            rows.extend(nginx_runs(args, *nginx_input, console))
        if args.envoy_url:
            rows.extend(envoy_run(args, console))
    print_tables(rows, console, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    failed = [
        r
        for r in rows
        if r["target"].startswith("GridShare")
        and any(p["overall"]["requests"] == 0 for p in r["phases"].values())
    ]
    if failed:
        raise SystemExit("a phase answered no request at all")


if __name__ == "__main__":
    main()
