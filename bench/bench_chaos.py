"""Chaos: kill the envelope publisher at random while operators enter derates and outages, and measure
how long any device stays on a limit the network can no longer carry.

Two `gridshare serve` instances (or one) share one store holding a generated feeder with every site
registered (500 by default, so a recomputation and its publication take long enough to be killed
in the middle of; `--sites 2000` for a heavier one). Three dev devices poll their DERControlList
over mutual TLS every `--poll-s`, from whichever instance answers. For `--minutes`, the benchmark

* enters derates, outages and clears at random through a live instance's operator API, and
* kills the current publisher with SIGKILL at random moments (every `--kill-every-s` on average, and
  after 30 % of the changes), a third of them at once, a third just after it starts a recomputation
  and a third as it starts publishing (it watches the publisher's log, `gridshare -v`), and restarts
  it 0.2-3 s later. What each kill interrupted is read back from the killed instance's log.

A device is on a stale limit when what it applies (its active control, else its DefaultDERControl)
exceeds what the constraints now in force allow: the larger of the dynamic envelope and the fallback
limit the engine's own functions give for that interval (computed here, independently of the servers).
Each stale episode is timed from the first change after the device's last good poll to its first good
poll again. Target: the longest <= derate_deadline_s + one poll interval.

    .venv/bin/python -m bench.bench_chaos                       # ~3 minutes on SQLite
    .venv/bin/python -m bench.bench_chaos --minutes 15          # longer
    .venv/bin/python -m bench.bench_chaos --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.bench_derc import scratch_database
from bench.bench_recompute import feeder_document
from bench.seeding import add_feeder_sites
from bench.serve_process import Device, ServeProcess, operator_token, prepare_pki, publisher_holder
from gridshare.core.settings import Settings
from gridshare.envelopes.planned_derates import compute_planned
from gridshare.grid.derates import apply_derates
from gridshare.recompute.fallback_plan import plan_fallback
from gridshare.recompute.snapshot import RunInputs, read_constraints
from gridshare.server.shared.context import build_context
from gridshare.store.db import make_engine, session_factory, transaction
from gridshare.store.envelope_blocks import decode_blocks
from gridshare.store.models import (
    AssetDerate,
    ClientKind,
    EnvelopeSetRecord,
    PublisherLease,
    SiteEnvelope,
)
from gridshare.store.publication.envelopes import current_set_id
from gridshare.store.publication.network_docs import active_names, store_network
from gridshare.store.queries.seed import seed_baseline
from gridshare.store.queries.sites import create_site
from gridshare.store.scope import ClientScope

DEVICES = ("device-1", "device-2", "device-3")
#: The distribution transformers the three devices sit behind (on three different feeders).
DEVICE_NODES = ("f0-lv0", "f1-lv0", "f2-lv0")
#: What the operator derates, with weights: device feeders and transformers, the zone, an unrelated one.
ASSETS = {
    "f0-cb": 3,
    "f1-cb": 3,
    "f2-cb": 2,
    "f0-lv0-dt": 3,
    "f1-lv0-dt": 2,
    "f2-lv0-dt": 2,
    "zone-tx": 1,
    "f5-cb": 1,
}
INTERVAL_S = 300
TOLERANCE_W = 1.0


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Change:
    t: float
    kind: str  # outage | derate | clear
    asset: str
    factor: float
    state: tuple[tuple[int, str, float], ...]  # derates in force after it: (id, asset, factor)

    def label(self) -> str:
        if self.kind == "clear":
            return f"clear {self.asset}"
        return f"{self.kind} {self.asset}" + ("" if self.kind == "outage" else f" x{self.factor:.2f}")


@dataclass(frozen=True)
class Poll:
    device: str
    t: float
    export_w: float | None
    import_w: float | None
    source: str


@dataclass
class Kill:
    t: float
    instance: str
    after_change_s: float | None  # seconds since the latest change, if any
    during: str = "idle"  # what the engine was doing: idle | computing | publishing (from its log)


def engine_activity(lines: list[str]) -> str:
    """From a killed instance's log: was a recomputation or a publication under way?"""
    state = "idle"
    for line in lines:
        if "gridshare.recompute" not in line:
            continue
        if "publishing" in line:
            state = "publishing"
        elif ") started" in line:
            state = "computing"
        elif "published" in line or "not published" in line or "skipped" in line:
            state = "idle"
    return state


@dataclass
class Episode:
    device: str
    start: float
    end: float | None
    change: Change | None
    kills_between: int

    def seconds(self, t_end: float) -> float:
        return (self.end if self.end is not None else t_end) - self.start


@dataclass(frozen=True)
class Seen:
    """What the monitor saw in the store at `t`: the lock's epoch, and the newest published set's epoch."""

    t: float
    lock_epoch: int
    set_epoch: int


@dataclass
class Run:
    seen: list[Seen] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    poll_errors: int = 0
    change_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


# ---------------------------------------------------------------- the store


def prepare_store(url: str, data_dir: Path, n_sites: int) -> dict[str, str]:
    """The generated feeder, every site registered, the dev devices at three of them; device -> site id."""
    pki = prepare_pki(data_dir, devices=len(DEVICES))
    settings = Settings(data_dir=data_dir, database_url=url, demo_network=False)
    ctx = build_context(settings)
    seed_baseline(ctx)
    now_s = ctx.now_s()
    doc = feeder_document(n_sites)
    sites: list[dict[str, object]] = doc["sites"]  # type: ignore[assignment]
    chosen = {node: next(s for s in sites if s["node"] == node) for node in DEVICE_NODES}
    taken = {s["nmi"] for s in chosen.values()}
    with transaction(ctx.sessions) as session:
        store_network(session, doc, "chaos", now_s)
    with transaction(ctx.sessions) as session:
        add_feeder_sites(session, sites, now_s, skip_nmis=taken)
    out = {}
    with transaction(ctx.sessions) as session:
        for name, node in zip(DEVICES, DEVICE_NODES, strict=True):
            client = pki.client(name)
            scope = ClientScope(ClientKind.device, client.lfdi, client.sfdi)
            row = create_site(
                session,
                scope,
                lfdi=client.lfdi,
                sfdi=client.sfdi,
                device_category=0,
                post_rate_s=None,
                pin=111115,
                now_s=now_s,
            )
            row.nmi = str(chosen[node]["nmi"])
            out[name] = str(chosen[node]["id"])
    ctx.engine.dispose()
    return out


# ---------------------------------------------------------------- what the network can carry


class Oracle:
    """The limits a correct server may publish for a device's site: the engine's own maths, run here."""

    def __init__(self, url: str, settings: Settings, device_sites: dict[str, str]) -> None:
        engine = make_engine(url)
        with session_factory(engine)() as session:
            names = active_names(session)
            base = read_constraints(session, int(time.time()), names[0]) if names else None
        engine.dispose()
        if base is None:
            raise SystemExit("no network in the store")
        self.base: RunInputs = base
        self.settings = settings
        self.device_sites = device_sites
        self._cache: dict[tuple[object, ...], dict[str, tuple[float, float]]] = {}

    def allowed(
        self, state: tuple[tuple[int, str, float], ...], interval_start: int
    ) -> dict[str, tuple[float, float]]:
        """Device -> (export W, import W) allowed in that interval with those derates in force."""
        key = (state, interval_start)
        if key not in self._cache:
            derates = [
                AssetDerate(
                    id=i, asset=a, factor=f, from_s=0, until_s=None, created_s=0, created_by="", reason=""
                )
                for i, a, f in state
            ]
            derated = apply_derates(self.base.nf.network, derates)
            inputs = replace(self.base, standing=derates, derated=derated, now_s=interval_start)
            plan = plan_fallback(inputs, self.settings)
            planned = compute_planned(
                self.base.nf,
                derates,
                datetime.fromtimestamp(interval_start, UTC),
                2 * INTERVAL_S,
                INTERVAL_S,
                self.settings.allocation_policy,
                None,
            )
            env = planned.envelopes
            nodes = {s.id: s.node for s in self.base.nf.sites}
            out = {}
            for device, site_id in self.device_sites.items():
                if nodes[site_id] in planned.isolated_now:
                    dyn = (0.0, 0.0)
                else:
                    j = env.site_ids.index(site_id)
                    dyn = (float(env.export_limit_w[0, j]), float(env.import_limit_w[0, j]))
                safe = plan.by_site[site_id]
                out[device] = (max(dyn[0], safe.export_limit_w), max(dyn[1], safe.import_limit_w))
            self._cache[key] = out
        return self._cache[key]


# ---------------------------------------------------------------- the actors


def poll_loop(
    device: Device, servers: list[ServeProcess], poll_s: float, run: Run, stop: threading.Event
) -> None:
    """Poll like an inverter: every `poll_s` (+-10 %), from the first instance that answers."""
    order = list(servers)
    while not stop.is_set():
        t = time.time()
        for server in list(order):
            if not server.alive():
                continue
            try:
                export_w, import_w, source = device.applied_limits_w(server.base_url, timeout_s=3)
            except (httpx.HTTPError, OSError, ValueError):
                with run.lock:
                    run.poll_errors += 1
                continue
            with run.lock:
                run.polls.append(Poll(device.name, time.time(), export_w, import_w, source))
            order.remove(server)
            order.insert(0, server)  # stay with an instance that answers
            break
        stop.wait(max(0.0, poll_s * random.uniform(0.9, 1.1) - (time.time() - t)))


class Operator:
    """Enters derates, outages and clears through whichever instance's operator API is up."""

    def __init__(self, servers: list[ServeProcess], token: str, run: Run, rng: random.Random) -> None:
        self.servers = servers
        self.headers = {"Authorization": f"Bearer {token}"}
        self.run = run
        self.rng = rng
        self.active: dict[int, tuple[str, float]] = {}

    def act(self) -> bool:
        live = [s for s in self.servers if s.alive()]
        if not live:
            return False
        server = self.rng.choice(live)
        t = time.time()
        try:
            if self.active and self.rng.random() < 0.35:
                derate_id = self.rng.choice(sorted(self.active))
                r = httpx.delete(
                    f"{server.operator_url}/derates/{derate_id}", headers=self.headers, timeout=10
                )
                if r.status_code != 204:
                    raise httpx.HTTPError(f"{r.status_code} {r.text}")
                asset, factor = self.active.pop(derate_id)
                kind = "clear"
            else:
                asset = self.rng.choices(list(ASSETS), weights=list(ASSETS.values()))[0]
                factor = 0.0 if self.rng.random() < 0.4 else round(self.rng.uniform(0.2, 0.8), 2)
                body = {"asset": asset, "factor": factor, "reason": "chaos"}
                r = httpx.post(f"{server.operator_url}/derates", json=body, headers=self.headers, timeout=10)
                if r.status_code != 201:
                    raise httpx.HTTPError(f"{r.status_code} {r.text}")
                self.active[int(r.json()["id"])] = (asset, factor)
                kind = "outage" if factor == 0 else "derate"
        except (httpx.HTTPError, OSError):
            with self.run.lock:
                self.run.change_errors += 1
            return False
        state = tuple(sorted((i, a, f) for i, (a, f) in self.active.items()))
        with self.run.lock:
            self.run.changes.append(Change(t, kind, asset, factor, state))
        return True


def monitor_loop(url: str, run: Run, stop: threading.Event) -> None:
    """Every 0.25 s: who holds the publisher lock (epoch), and which epoch published the newest set."""
    engine = make_engine(url)
    try:
        while not stop.wait(0.25):
            try:
                with session_factory(engine)() as session:
                    lock_epoch = publisher_epoch(session)
                    newest = session.execute(
                        select(EnvelopeSetRecord.detail)
                        .where(EnvelopeSetRecord.status == "published")
                        .order_by(EnvelopeSetRecord.id.desc())
                        .limit(1)
                    ).scalar_one_or_none()
            except Exception:
                continue  # the store is busy with a publication: look again shortly
            with run.lock:
                run.seen.append(Seen(time.time(), lock_epoch, int((newest or {}).get("epoch") or 0)))
    finally:
        engine.dispose()


def publisher_epoch(session: Session) -> int:
    row = session.get(PublisherLease, 1)
    return int(row.epoch) if row is not None else 0


def publisher_gaps(run: Run) -> list[tuple[float, float]]:
    """(from, to): from a kill until a successor held the lock (the end of the run if none did)."""
    gaps = []
    for kill in run.kills:
        before = [s for s in run.seen if s.t <= kill.t]
        epoch = before[-1].lock_epoch if before else 0
        taken = next((s.t for s in run.seen if s.t > kill.t and s.lock_epoch > epoch), None)
        gaps.append((kill.t, taken if taken is not None else run.seen[-1].t if run.seen else kill.t))
    return gaps


def takeovers(run: Run) -> tuple[list[float], list[float]]:
    """Per kill: seconds until a new holder had the lock, and until a set of a newer epoch was published."""
    locked, published = [], []
    for kill in run.kills:
        before = [s for s in run.seen if s.t <= kill.t]
        if not before:
            continue
        epoch = before[-1].lock_epoch
        after = [s for s in run.seen if s.t > kill.t]
        lock = next((s.t for s in after if s.lock_epoch > epoch), None)
        pub = next((s.t for s in after if s.set_epoch > epoch), None)
        if lock is not None:
            locked.append(lock - kill.t)
        if pub is not None:
            published.append(pub - kill.t)
    return locked, published


def current_publisher(servers: list[ServeProcess], url: str) -> ServeProcess | None:
    holder, _epoch = publisher_holder(url)
    return next((s for s in servers if s.alive() and f":{s.pid}:" in holder), None)


def kill_publisher(server: ServeProcess, run: Run) -> None:
    last = run.changes[-1].t if run.changes else None
    server.kill()
    now = time.time()
    during = engine_activity(server.log_lines())
    run.kills.append(Kill(now, server.name, None if last is None else now - last, during))


@dataclass
class Aim:
    """A kill waiting for the publisher to start a computation or a publication (or for `until`)."""

    server: ServeProcess
    pattern: str  # ") started" | "publishing"
    seen_lines: int
    until: float
    delay_s: float  # after the line appears


def aimed(aim: Aim) -> bool:
    """The awaited line has appeared in the publisher's log (or the wait is over)."""
    if time.time() >= aim.until or not aim.server.alive():
        return True
    lines = aim.server.log_lines()
    fresh = [line for line in lines[aim.seen_lines :] if "gridshare.recompute" in line]
    if any(aim.pattern in line for line in fresh):
        time.sleep(aim.delay_s)
        return True
    return False


# ---------------------------------------------------------------- analysis


def episodes(run: Run, oracle: Oracle, t_end: float) -> tuple[list[Episode], int]:
    """Stale episodes per device, and polls judged stale with no change to explain them (oracle misses)."""
    out: list[Episode] = []
    unexplained = 0
    changes = sorted(run.changes, key=lambda c: c.t)

    def state_at(t: float) -> tuple[tuple[int, str, float], ...]:
        state: tuple[tuple[int, str, float], ...] = ()
        for c in changes:
            if c.t <= t:
                state = c.state
        return state

    for device in DEVICES:
        polls = sorted((p for p in run.polls if p.device == device), key=lambda p: p.t)
        last_ok = polls[0].t if polls else 0.0
        current: Episode | None = None
        for p in polls:
            allowed = oracle.allowed(state_at(p.t), int(p.t) - int(p.t) % INTERVAL_S)[device]
            export = p.export_w if p.export_w is not None else float("inf")
            imp = p.import_w if p.import_w is not None else float("inf")
            stale = export > allowed[0] + TOLERANCE_W or imp > allowed[1] + TOLERANCE_W
            if stale and current is None:
                cause = next((c for c in changes if last_ok < c.t <= p.t), None)
                if cause is None:
                    unexplained += 1
                    continue
                current = Episode(device, cause.t, None, cause, 0)
            elif not stale:
                if current is not None:
                    current.end = p.t
                    current.kills_between = sum(1 for k in run.kills if current.start <= k.t <= p.t)
                    out.append(current)
                    current = None
                last_ok = p.t
        if current is not None:
            current.kills_between = sum(1 for k in run.kills if k.t >= current.start)
            out.append(current)
    return out, unexplained


def current_set_coherent(url: str, horizon_s: int) -> str:
    """After all the kills: the current set is a published one, and every blob in it decodes into
    blocks that end, none later than one horizon from the set's creation."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            names = active_names(session)
            set_id = current_set_id(session, names[0]) if names else None
            record = session.get(EnvelopeSetRecord, set_id) if set_id is not None else None
            if record is None or record.status != "published":
                return f"NO (pointer at {set_id})"
            latest = record.created_s + horizon_s + INTERVAL_S
            blobs = session.execute(
                select(SiteEnvelope.blocks).where(SiteEnvelope.set_id == set_id)
            ).scalars()
            n = 0
            for blob in blobs:
                blocks = decode_blocks(blob)
                ends = blocks["start"] + blocks["duration"]
                if len(blocks) and (bool((blocks["duration"] <= 0).any()) or int(ends.max()) > latest):
                    return f"NO (set {set_id} has a block that does not end in time)"
                n += 1
            return f"yes (set {set_id}, {n} sites)"
    finally:
        engine.dispose()


def published_epochs(url: str) -> list[tuple[int, int, int]]:
    """(set id, epoch, created_s) of every published set, in publication order."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(EnvelopeSetRecord)
                .where(EnvelopeSetRecord.status == "published")
                .order_by(EnvelopeSetRecord.id)
            ).scalars()
            return [(r.id, int(r.detail.get("epoch") or 0), r.created_s) for r in rows]
    finally:
        engine.dispose()


# ---------------------------------------------------------------- main


def chaos(args: argparse.Namespace, url: str, data_dir: Path, console: Console) -> None:
    rng = random.Random(args.seed)
    with console.status(f"storing a {args.sites}-site feeder"):
        device_sites = prepare_store(url, data_dir, args.sites)
    env = {
        "GRIDSHARE_DEMO_NETWORK": "false",
        "GRIDSHARE_DERATE_DEADLINE_S": str(args.deadline_s),
        "GRIDSHARE_RECOMPUTE_INTERVAL_S": str(args.recompute_interval_s),
        "GRIDSHARE_PUBLISHER_POLL_S": "1",
        "GRIDSHARE_ENVELOPE_HORIZON_S": str(args.horizon_h * 3600),
    }
    names = [f"instance-{i + 1}" for i in range(args.instances)]
    servers = [ServeProcess(name, data_dir, url, dict(env), verbose=True) for name in names]
    pki = prepare_pki(data_dir)
    devices = [Device(pki, name) for name in DEVICES]
    settings = Settings(data_dir=data_dir, database_url=url, demo_network=False)
    oracle = Oracle(url, settings, device_sites)
    run = Run()
    stop = threading.Event()
    try:
        with console.status("starting the instances"):
            for server in servers:
                server.start()
                server.wait_ready(devices[0].tls, timeout_s=120)
            deadline = time.monotonic() + 120
            while not published_epochs(url):
                if time.monotonic() > deadline:
                    raise SystemExit("no envelopes were published within 120 s")
                time.sleep(0.5)
        token = operator_token(url, "chaos")
        operator = Operator(servers, token, run, rng)
        pollers = [
            threading.Thread(target=poll_loop, args=(d, servers, args.poll_s, run, stop), daemon=True)
            for d in devices
        ]
        pollers.append(threading.Thread(target=monitor_loop, args=(url, run, stop), daemon=True))
        for thread in pollers:
            thread.start()
        t_start = time.time()
        t_end = t_start + args.minutes * 60
        next_change = t_start + rng.uniform(3, 8)
        next_kill = t_start + rng.expovariate(1 / args.kill_every_s)
        restarts: list[tuple[float, ServeProcess]] = []
        aim: Aim | None = None
        with console.status("chaos") as status:
            while time.time() < t_end:
                now = time.time()
                if now >= next_change:
                    if operator.act():
                        next_change = now + rng.uniform(args.change_every_s * 0.5, args.change_every_s * 1.5)
                        if rng.random() < 0.3:  # into the recomputation (or publication) it sets off
                            next_kill = min(next_kill, now + rng.uniform(0.2, 2.0))
                    else:
                        next_change = now + 1.0
                if aim is None and now >= next_kill:
                    publisher = current_publisher(servers, url)
                    next_kill = now + rng.expovariate(1 / args.kill_every_s)
                    if publisher is not None:
                        # a third at once, a third when it next starts computing, a third mid-publication
                        pattern = rng.choice(("", ") started", "publishing"))
                        delay = rng.uniform(0.0, 1.0) if pattern == ") started" else 0.0
                        lines = len(publisher.log_lines())
                        aim = Aim(publisher, pattern, lines, now + (30.0 if pattern else 0.0), delay)
                if aim is not None and aimed(aim):
                    if aim.server.alive():
                        kill_publisher(aim.server, run)
                        restarts.append((time.time() + rng.uniform(0.2, 3.0), aim.server))
                    aim = None
                for due in [r for r in restarts if r[0] <= now]:
                    restarts.remove(due)
                    due[1].start()
                status.update(
                    f"chaos: {int(t_end - now)} s left, {len(run.changes)} changes, {len(run.kills)} kills, "
                    f"{len(run.polls)} polls"
                )
                time.sleep(0.05)
            for _t, server in restarts:
                server.start()
        # let the last change settle so its episode can end (and be measured) rather than be cut off
        stop.wait(args.deadline_s + 2 * args.poll_s)
        t_final = time.time()
    finally:
        stop.set()
        for server in servers:
            server.stop()
    found, unexplained = episodes(run, oracle, t_final)
    coherent = current_set_coherent(url, args.horizon_h * 3600)
    report(console, args, url, run, found, unexplained, published_epochs(url), t_final, coherent)


def report(
    console: Console,
    args: argparse.Namespace,
    url: str,
    run: Run,
    found: list[Episode],
    unexplained: int,
    epochs: list[tuple[int, int, int]],
    t_final: float,
    coherent: str,
) -> None:
    store = url.split(":", 1)[0].split("+")[0]
    target = args.deadline_s + args.poll_s
    longest = max((e.seconds(t_final) for e in found), default=0.0)
    kinds = Counter(c.kind for c in run.changes)
    near = sum(1 for k in run.kills if k.after_change_s is not None and k.after_change_s <= 2.5)
    during = Counter(k.during for k in run.kills)
    epoch_seq = [e for _i, e, _t in epochs]
    ordered = epoch_seq == sorted(epoch_seq)
    locked, published = takeovers(run)

    def spread(values: list[float]) -> str:
        return f"{sorted(values)[len(values) // 2]:.1f} / {max(values):.1f}" if values else "-"

    table = Table(
        title=f"chaos on {store}: {args.instances} instance(s), {args.sites} sites, {args.minutes:g} min"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        (
            "changes entered (outage / derate / clear)",
            f"{kinds['outage']} / {kinds['derate']} / {kinds['clear']}",
        ),
        ("publisher kills (SIGKILL) / within 2.5 s of a change", f"{len(run.kills)} / {near}"),
        (
            "kills while it computed / published / idled",
            f"{during['computing']} / {during['publishing']} / {during['idle']}",
        ),
        ("publisher epochs / sets published", f"{max(epoch_seq, default=0)} / {len(epochs)}"),
        ("sets in epoch order (never two publishers)", "yes" if ordered else "NO"),
        ("current set whole after the kills", coherent),
        ("kill -> lock taken by a successor, median / max s", spread(locked)),
        ("kill -> successor's first publication, median / max s", spread(published)),
        ("device polls answered / attempts refused (instance down)", f"{len(run.polls)} / {run.poll_errors}"),
        ("stale episodes (device on a less safe limit)", str(len(found))),
        ("longest stale s (target <= deadline + poll)", f"{longest:.1f} (<= {target:g})"),
        ("stale polls no change explains (oracle misses)", str(unexplained)),
        (
            "verdict",
            "MET"
            if longest <= target and ordered and unexplained == 0 and coherent.startswith("yes")
            else "NOT MET",
        ),
    ]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    worst = sorted(found, key=lambda e: -e.seconds(t_final))[:5]
    gaps = publisher_gaps(run)
    if worst:
        detail = Table(title="longest stale episodes")
        for col in ("device", "after", "stale s", "kills meanwhile", "s with no publisher", "ended"):
            detail.add_column(col)
        for e in worst:
            end = e.end if e.end is not None else t_final
            orphaned = sum(max(0.0, min(end, b) - max(e.start, a)) for a, b in gaps)
            detail.add_row(
                e.device,
                e.change.label() if e.change else "?",
                f"{e.seconds(t_final):.1f}",
                str(e.kills_between),
                f"{orphaned:.1f}",
                "yes" if e.end is not None else "NO (still stale at the end)",
            )
        console.print(detail)


def main() -> None:
    parser = argparse.ArgumentParser(description="kill the publisher at random; time stale limits on devices")
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="chaos duration (default 3; e.g. 15 for long)"
    )
    parser.add_argument("--long", action="store_true", help="a 15-minute run (same as --minutes 15)")
    parser.add_argument("--instances", type=int, choices=(1, 2), default=2)
    parser.add_argument("--sites", type=int, default=500, help="registered sites on the generated feeder")
    parser.add_argument("--poll-s", type=float, default=5.0, help="device poll interval")
    parser.add_argument("--deadline-s", type=float, default=30.0, help="derate_deadline_s of the servers")
    parser.add_argument("--recompute-interval-s", type=int, default=10, help="scheduled recomputation period")
    parser.add_argument("--horizon-h", type=int, default=24)
    parser.add_argument(
        "--change-every-s", type=float, default=15.0, help="mean gap between operator changes"
    )
    parser.add_argument("--kill-every-s", type=float, default=30.0, help="mean gap between random kills")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--database-url", default="", help="PostgreSQL URL (a scratch database is made next to it)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="a new directory for the data and logs")
    args = parser.parse_args()
    if args.long:
        args.minutes = 15.0
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.database_url) as url:
        data_dir = Path(tmp)
        if args.keep is not None:  # the instances' logs stay there for a look afterwards
            args.keep.mkdir(parents=True, exist_ok=False)
            data_dir = args.keep
        chaos(args, url or f"sqlite:///{data_dir / 'gridshare.db'}", data_dir, console)


if __name__ == "__main__":
    main()
