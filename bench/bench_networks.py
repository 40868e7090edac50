"""Many networks end to end: recompute and publish into a store, derate latency, serving under republication.

Builds a synthetic utility in a real store (SQLite file by default, `--database-url` for a scratch
PostgreSQL database): K suburban networks of N houses (`bench_utility`'s generator, each with NMIs of
its own) loaded with `store_network`, and a registered Site for every NMI. Then:

1. **Recompute and publish** every network with `Recomputer.run_once()`: in-process, then on a real
   `dask scheduler` with 1 and 2 `dask worker`s (`compute_scheduler_address`). Prints sites/s, the sum of
   the per-network compute and publish seconds (from each set's `EnvelopeSetRecord.detail`), the
   publisher's and the workers' processor time, and the load average (this 2-core machine is shared).
   Targets (issue 13): 100 x 1,000 sites within 60 s on two workers; two workers >= 1.7x one.
2. **Derate latency**: the engine running (`Recomputer.start()`, `change_poll_s` 1 s), an outage of a
   transformer of one network entered (then cleared), timed until the store holds the changed envelope
   and until a device reads it over mutual TLS from a separate `gridshare serve --roles serve` process.
   Three situations: the engine otherwise idle; the scheduler republishing every network back to back
   (`recompute_interval_s` 10 s, shorter than a full run); a thread republishing the other networks one
   by one (their own `NetworkEngine`s) while the watch handles the derate. Target <= 5 s.
3. **Serving one network while the others republish**: devices of one network poll their
   DERControlList (`bench.loadgen`, mutual TLS, keep-alive) with nothing publishing, then while a
   thread republishes the other networks. Target: >= 90 % of the quiet rate.

    .venv/bin/python -m bench.bench_networks [--networks 20] [--sites 500] [--modes inproc,1,2]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--trials 2]
        [--load-seconds 10] [--connections 32] [--skip derate,serve] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from lxml import etree
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, update

from bench.bench_derc import scratch_database, start_server, wait_ready
from bench.bench_utility import CYCLE_S, SIZING_SITES, dask_cluster, utility_tasks
from bench.seeding import add_feeder_sites, add_site
from bench.serve_process import NS, device_tls, free_port
from gridshare.certs.devpki import DevPki, create_dev_pki
from gridshare.compute.cluster import ComputeCluster
from gridshare.compute.task import compute_network
from gridshare.core.settings import Settings
from gridshare.recompute.scheduler import Recomputer
from gridshare.server.shared.context import build_context
from gridshare.sim.feeder import suburb_document
from gridshare.store.db import transaction
from gridshare.store.models import AssetDerate, ClientKind, EnvelopePointer, EnvelopeSetRecord, Site
from gridshare.store.publication.network_docs import store_network
from gridshare.store.queries.envelopes import current_envelope
from gridshare.store.queries.seed import seed_baseline
from gridshare.store.scope import ClientScope

REPO = Path(__file__).resolve().parent.parent
TARGET = "zone-000"  # the network whose devices are served and whose transformer is derated
DERATED = "tx-1"  # its first distribution transformer: the benchmark's devices are its first houses
POLL_S = 0.1
_KEYS = {
    "situation": "situation",
    "p50 ms": "p50_ms",
    "p99 ms": "p99_ms",
    "errors": "errors",
    "sets published": "sets_published",
    "busy runs": "busy_runs",
}


def network_documents(networks: int, sites: int, seed: int = 1) -> list[dict[str, Any]]:
    """K suburbs of N houses, as `bench_utility` generates them, with NMIs unique across the utility
    (an NMI belongs to one network: `store_network` refuses a document naming another's)."""
    docs = []
    for k in range(networks):
        doc = suburb_document(
            sites=sites, transformers=max(1, sites // 50), seed=seed + k, name=f"zone-{k:03d}"
        )
        for i, s in enumerate(doc["sites"]):
            s["nmi"] = f"N{k:04d}{i:06d}"
        docs.append(doc)
    return docs


@dataclass
class Utility:
    """What the store holds: the networks and the site ids of the devices the benchmark drives."""

    networks: int
    sites: int
    load_s: float  # store_network of every network
    register_s: float  # a Site for every NMI
    device_sites: dict[str, int]  # client name -> site id (all on TARGET, behind DERATED)
    program_id: int = 0


def build_utility(settings: Settings, docs: list[dict[str, Any]], pki: DevPki) -> Utility:
    """Load every network and register a Site for every NMI; the PKI's devices get TARGET's first houses."""
    ctx = build_context(settings)
    try:
        seed_baseline(ctx)
        now_s = int(time.time())
        t = time.perf_counter()
        for doc in docs:
            with transaction(ctx.sessions) as session:
                store_network(session, doc, "bench", now_s)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        devices = pki.devices
        first = docs[0]["sites"][: len(devices)]
        device_sites: dict[str, int] = {}
        with transaction(ctx.sessions) as session:
            for client, s in zip(devices, first, strict=True):
                scope = ClientScope(ClientKind.device, client.lfdi, client.sfdi)
                site = add_site(session, scope, client.lfdi, client.sfdi, now_s)
                site.nmi = s["nmi"]
                session.flush()
                device_sites[client.name] = site.id
            taken = {s["nmi"] for s in first}
            add_feeder_sites(
                session, (s for doc in docs for s in doc["sites"]), now_s, skip_nmis=taken, first_index=1
            )
        register_s = time.perf_counter() - t
        return Utility(len(docs), len(docs[0]["sites"]), load_s, register_s, device_sites)
    finally:
        ctx.engine.dispose()


# -- 1. recompute and publish --------------------------------------------------------------------------
@dataclass
class Throughput:
    label: str
    sites: int
    networks: int
    fallback_sets: int  # published for a change past its deadline while the run was under way
    wall_s: float
    compute_sum_s: float  # per-network compute seconds, summed (networks overlap on a cluster)
    publish_sum_s: float  # per-network publish seconds, summed (publications take turns)
    publisher_cpu_s: float  # this process (reads, publication, and the computation when in-process)
    worker_cpu_s: float | None  # all dask workers together, None in-process
    workers: int
    load_before: float
    load_after: float

    @property
    def sites_per_s(self) -> float:
        return self.sites / self.wall_s

    @property
    def compute_cpu_s(self) -> float:
        """Processor seconds spent computing: the workers'; in-process, the computation's own seconds."""
        return self.worker_cpu_s if self.worker_cpu_s is not None else self.compute_sum_s

    @property
    def cpu_share(self) -> float:
        """Share of a core each computing process got over the run (1.0: a core of its own)."""
        if self.worker_cpu_s is None:
            return self.publisher_cpu_s / self.wall_s
        return self.worker_cpu_s / (self.wall_s * max(self.workers, 1))

    @property
    def other_s(self) -> float | None:
        """In-process (one network after another): the run's time neither computing nor publishing,
        i.e. reading the inputs and refreshing the fallback limits. None on a cluster (it overlaps)."""
        if self.worker_cpu_s is not None:
            return None
        return self.wall_s - self.compute_sum_s - self.publish_sum_s


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _worker_cpu_s() -> float:
    """Processor seconds of the process it runs in (run on every dask worker)."""
    return _cpu_s()


def sets_since(settings: Settings, after_id: int) -> list[dict[str, Any]]:
    """Details of the published sets with an id above `after_id`."""
    ctx = build_context(settings)
    try:
        with ctx.sessions() as session:
            rows = session.execute(
                select(EnvelopeSetRecord.detail).where(
                    EnvelopeSetRecord.id > after_id, EnvelopeSetRecord.status == "published"
                )
            ).scalars()
            return [dict(d) for d in rows]
    finally:
        ctx.engine.dispose()


def last_set_id(settings: Settings) -> int:
    ctx = build_context(settings)
    try:
        with ctx.sessions() as session:
            return int(session.execute(select(EnvelopeSetRecord.id).order_by(EnvelopeSetRecord.id.desc()))
                       .scalars().first() or 0)  # fmt: skip
    finally:
        ctx.engine.dispose()


def timed_run(label: str, settings: Settings, workers: int, watch: ComputeCluster | None) -> Throughput:
    """One `Recomputer.run_once()` over every network on a fresh engine (a new process would be one)."""
    before_id = last_set_id(settings)
    ctx = build_context(settings)
    engine = Recomputer(ctx, holder=f"bench-{label}")
    try:
        worker_cpu0 = sum(watch.client.run(_worker_cpu_s).values()) if watch is not None else 0.0
        load_before = os.getloadavg()[0]
        cpu0, t0 = _cpu_s(), time.perf_counter()
        outcome = engine.run_once(f"bench {label}")
        wall_s = time.perf_counter() - t0
        cpu_s = _cpu_s() - cpu0
        load_after = os.getloadavg()[0]
        worker_cpu = (
            sum(watch.client.run(_worker_cpu_s).values()) - worker_cpu0 if watch is not None else None
        )
    finally:
        engine.stop()
        ctx.engine.dispose()
    if outcome.status != "published":
        print(f"  {label}: {outcome.status}: {outcome.detail[:500]}", flush=True)
    published = sets_since(settings, before_id)
    details = [d for d in published if not d.get("fallback")]
    if len(details) < len(published):  # a network's change past its deadline: fallback published first
        print(f"  {label}: {len(published) - len(details)} fallback set(s) published too", flush=True)
    return Throughput(
        label,
        sum(int(d.get("sites_published", 0)) for d in details),
        len(details),
        len(published) - len(details),
        wall_s,
        sum(float(d.get("compute_s", 0.0)) for d in details),
        sum(float(d.get("publish_s", 0.0)) for d in details),
        cpu_s,
        worker_cpu,
        workers,
        load_before,
        load_after,
    )


def measure_throughput(base: Settings, modes: list[str], workdir: Path, console: Console) -> list[Throughput]:
    runs = []
    first = base.model_copy(update={"compute_local_workers": 1, "compute_scheduler_address": None})
    console.print("first publication (in-process) ...")
    runs.append(timed_run("first publication, in-process", first, 0, None))
    console.print(_throughput_line(runs[-1]))
    for mode in modes:
        if mode == "inproc":
            runs.append(timed_run("in-process", first, 0, None))
        else:
            n = int(mode)
            with dask_cluster(n, workdir) as address, ComputeCluster(address, connect_timeout_s=60) as watch:
                watch.wait_for_workers(n, timeout_s=120)
                watch.client.run(compute_network, utility_tasks(1, 50)[0])  # imports, on every worker
                settings = base.model_copy(update={"compute_scheduler_address": address})
                runs.append(timed_run(f"{n} dask worker(s)", settings, n, watch))
        console.print(_throughput_line(runs[-1]))
    return runs


def _throughput_line(r: Throughput) -> str:
    return (
        f"  {r.label}: {r.wall_s:.1f} s for {r.sites:,} sites in {r.networks} networks = "
        f"{r.sites_per_s:,.0f} sites/s; compute {r.compute_sum_s:.1f} s, publish {r.publish_sum_s:.1f} s "
        f"(sums per network); computing process(es) got {r.cpu_share:.0%} of a core; "
        f"load {r.load_before:.2f} -> {r.load_after:.2f}"
    )


# -- 2. derate latency ---------------------------------------------------------------------------------
@dataclass
class Latency:
    situation: str
    change: str  # "outage" | "cleared"
    store_s: float | None
    device_s: float | None
    set_reason: str
    others_published: int  # publications of other networks while it was waited for


def _limits_from_store(ctx: Any, site_id: int) -> tuple[float, str]:
    """max(export, import) W of the block in force now in the site's current set, and the set's reason."""
    with ctx.sessions() as session:
        site = session.get(Site, site_id)
        found = current_envelope(session, site) if site is not None else None
        if found is None:
            return float("nan"), ""
        reason = session.execute(
            select(EnvelopeSetRecord.reason)
            .join(EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id)
            .where(EnvelopePointer.network == TARGET)
        ).scalar_one_or_none()
    now = time.time()
    blocks = found[1]
    block = next((b for b in blocks if b.start_s <= now < b.end_s), blocks[0] if blocks else None)
    if block is None:
        return float("nan"), reason or ""
    return max(block.export_limit_w, block.import_limit_w), reason or ""


def _limits_from_device(client: httpx.Client, path: str) -> float:
    """max(export, import) W of the controls in force, as the device reads its DERControlList (nan: none)."""
    response = client.get(path)
    response.raise_for_status()
    out = float("nan")
    for control in etree.fromstring(response.content):
        if control.findtext("s:EventStatus/s:currentStatus", namespaces=NS) != "1":
            continue
        base = control.find("s:DERControlBase", NS)
        for tag in ("c:opModExpLimW", "c:opModImpLimW"):
            el = base.find(tag, NS) if base is not None else None
            if el is not None:
                w = int(el.findtext("s:value", namespaces=NS) or 0) * 10.0 ** int(
                    el.findtext("s:multiplier", namespaces=NS) or 0
                )
                out = w if math.isnan(out) else max(out, w)
    return out


def _count_sets(ctx: Any, after_id: int) -> int:
    with ctx.sessions() as session:
        return len(
            session.execute(
                select(EnvelopeSetRecord.id).where(
                    EnvelopeSetRecord.id > after_id, EnvelopeSetRecord.status == "published"
                )
            ).all()
        )


def wait_for_change(
    ctx: Any, site_id: int, device: tuple[httpx.Client, str] | None, cut_off: bool, timeout_s: float
) -> tuple[float | None, float | None, str]:
    """Seconds until the store, and the device over HTTP, show the site cut off (or energised again)."""
    t0 = time.perf_counter()
    store_s = device_s = None
    reason = ""

    def changed(w: float) -> bool:
        return (not math.isnan(w)) and ((w < 1.0) if cut_off else (w >= 1.0))

    while time.perf_counter() - t0 < timeout_s:
        if store_s is None:
            w, reason = _limits_from_store(ctx, site_id)
            if changed(w):
                store_s = time.perf_counter() - t0
        if device is not None and device_s is None:
            try:
                if changed(_limits_from_device(*device)):
                    device_s = time.perf_counter() - t0
            except httpx.HTTPError:
                pass
        if store_s is not None and (device is None or device_s is not None):
            break
        time.sleep(POLL_S)
    return store_s, device_s, reason


class Republisher:
    """A thread republishing the other networks one after another through their own engines."""

    def __init__(self, engine: Recomputer, gap_s: float = 0.0) -> None:
        self._engine = engine
        self._gap_s = gap_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-republisher", daemon=True)
        self.published = 0
        self.failed = 0

    def __enter__(self) -> Republisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        others = sorted(n for n in self._engine.networks() if n != TARGET)
        i = 0
        while others and not self._stop.is_set():
            name = others[i % len(others)]
            i += 1
            self._engine.ensure_publisher()  # what the engine's ticker does; nothing else runs it here
            outcome = self._engine.networks()[name].run.attempt("bench republish")
            if outcome.status == "published":
                self.published += 1
            else:
                self.failed += 1
            self._stop.wait(self._gap_s)


class ComputeOnly:
    """The control for `Republisher`: the same kind of computation in a thread, nothing published.

    Tells the processor cost of republication apart from its effect on what the server caches.
    """

    def __init__(self, sites: int) -> None:
        self._task = utility_tasks(1, sites)[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-compute-only", daemon=True)
        self.published = 0  # computations done (the name `Republisher` reports under)
        self.failed = 0

    def __enter__(self) -> ComputeOnly:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            compute_network(self._task)
            self.published += 1


def measure_derate(
    base: Settings, utility: Utility, device: tuple[httpx.Client, str] | None, trials: int, console: Console
) -> list[Latency]:
    site_id = next(iter(utility.device_sites.values()))
    out: list[Latency] = []
    situations: list[tuple[str, dict[str, Any], bool]] = [
        ("engine otherwise idle", {"recompute_interval_s": 86400}, False),
        ("scheduler republishing all networks back to back", {"recompute_interval_s": 10}, False),
        ("a thread republishing the other networks", {"recompute_interval_s": 86400}, True),
    ]
    for situation, update_, thread in situations:
        settings = base.model_copy(update={"change_poll_s": 1, **update_})
        ctx = build_context(settings)
        engine = Recomputer(ctx, holder="bench-derate")
        engine.start()
        try:
            _wait_first_run(ctx, engine, utility, settings, console)
            with Republisher(engine) if thread else _nothing() as rep:
                for trial in range(trials):
                    for cut_off in (True, False):
                        before = last_set_id(settings)
                        with transaction(ctx.sessions) as session:
                            if cut_off:
                                session.add(
                                    AssetDerate(
                                        network=TARGET, asset=DERATED, factor=0.0, reason="bench",
                                        from_s=0, until_s=None, created_s=int(time.time()),
                                        created_by="bench",
                                    )
                                )  # fmt: skip
                            else:
                                session.execute(
                                    update(AssetDerate)
                                    .where(AssetDerate.network == TARGET, AssetDerate.cleared_s.is_(None))
                                    .values(cleared_s=int(time.time()))
                                )
                        store_s, device_s, reason = wait_for_change(ctx, site_id, device, cut_off, 120.0)
                        others = _count_sets(ctx, before) - 1
                        change = "outage" if cut_off else "cleared"
                        lat = Latency(situation, change, store_s, device_s, reason, max(others, 0))
                        out.append(lat)
                        console.print(
                            f"  {situation}, trial {trial + 1}, {lat.change}: store {_fmt(store_s)}, "
                            f"device {_fmt(device_s)} (set reason: {reason!r}; {lat.others_published} "
                            "other sets published meanwhile)"
                        )
                if rep is not None:
                    console.print(f"  republisher: {rep.published} published, {rep.failed} not")
        finally:
            engine.stop()
            ctx.engine.dispose()
    return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _wait_first_run(
    ctx: Any, engine: Recomputer, utility: Utility, settings: Settings, console: Console
) -> None:
    """Until the engine's first run has covered every network (so the watch knows every fingerprint)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 600:
        engines = engine.networks()
        if len(engines) == utility.networks and all(
            e.state.inputs_seen is not None for e in engines.values()
        ):
            break
        time.sleep(0.5)
    console.print(f"  engine started, first run over in {time.perf_counter() - t0:.1f} s")


def _fmt(s: float | None) -> str:
    return "not seen" if s is None else f"{s:.2f} s"


# -- 3. serving under republication -----------------------------------------------------------------------
def loadgen(port: int, workdir: Path, pki: DevPki, seconds: float, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable, "-m", "bench.loadgen", "--url", f"https://127.0.0.1:{port}/",
            "--ca", str(pki.ca_path), "--clients", str(pki.directory / "clients.json"),
            "--targets", str(workdir / "targets.json"), "--connections", str(connections),
            "--seconds", str(seconds), "--expect", "DERControlList",
        ],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_serving(
    base: Settings,
    port: int,
    workdir: Path,
    pki: DevPki,
    seconds: float,
    connections: int,
    sites: int,
    console: Console,
) -> list[dict[str, Any]]:
    rows = []
    ctx = build_context(base)
    engine = Recomputer(ctx, holder="bench-serve")
    try:
        engine.ensure_publisher()
        for situation in ("quiet", "others republishing", "computing only (control)", "quiet"):
            load_before = os.getloadavg()[0]
            before = last_set_id(base)
            done = 0
            if situation == "quiet":
                result = loadgen(port, workdir, pki, seconds, connections)
            else:
                busy = Republisher(engine) if situation.startswith("others") else ComputeOnly(sites)
                with busy as rep:
                    time.sleep(1.0)
                    result = loadgen(port, workdir, pki, seconds, connections)
                    done = rep.published
                console.print(f"  {situation}: {rep.published} done, {rep.failed} not")
            row = {
                "situation": situation,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                "sets_published": _count_sets(ctx, before),
                "busy_runs": 0 if situation == "quiet" else done,
                **result,
            }
            rows.append(row)
            console.print(f"  {json.dumps(row)}")
    finally:
        engine.stop()
        ctx.engine.dispose()
    return rows


# -- the whole -----------------------------------------------------------------------------------------------
@dataclass
class Report:
    networks: int
    sites: int
    store: str
    build: dict[str, float] = field(default_factory=dict)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    derate: list[dict[str, Any]] = field(default_factory=list)
    serving: list[dict[str, Any]] = field(default_factory=list)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--sites", type=int, default=500, help="sites per network")
    parser.add_argument(
        "--modes", default="inproc,1,2", help="inproc and/or dask worker counts, e.g. inproc,1,2"
    )
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a scratch directory")
    parser.add_argument("--devices", type=int, default=8, help="devices (certificates) polling, on zone-000")
    parser.add_argument("--trials", type=int, default=2, help="outage/clear pairs per derate situation")
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip", default="", help="comma-separated: throughput, derate, serve")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    modes = [m for m in args.modes.split(",") if m]
    console = Console(width=max(Console().width, 120))
    console.print(
        f"{args.networks} networks x {args.sites} sites = {args.networks * args.sites:,} sites; "
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="gs-bench-networks-") as tmp,
        scratch_database(args.database_url) as url,
    ):
        workdir = Path(tmp)
        url = url or f"sqlite:///{workdir / 'gridshare.db'}"
        pki = create_dev_pki(workdir / "pki", devices=args.devices, aggregators=1)
        settings = Settings(
            data_dir=workdir,
            database_url=url,
            tls_ca_file=pki.ca_path,
            tls_cert_file=pki.server_cert_path,
            tls_key_file=pki.server_key_path,
        )
        report = Report(args.networks, args.sites, url.split(":", 1)[0])
        t = time.perf_counter()
        docs = network_documents(args.networks, args.sites)
        gen_s = time.perf_counter() - t
        utility = build_utility(settings, docs, pki)
        report.build = {
            "generate_s": gen_s,
            "store_network_s": utility.load_s,
            "register_s": utility.register_s,
        }
        console.print(
            f"built: generated in {gen_s:.1f} s, store_network x {args.networks} in {utility.load_s:.1f} s, "
            f"{args.networks * args.sites:,} sites registered in {utility.register_s:.1f} s"
        )
        runs: list[Throughput] = []
        if "throughput" not in skip:
            runs = measure_throughput(settings, modes, workdir, console)
        else:
            timed_run("first publication, in-process", settings, 0, None)
        report.throughput = [
            {**asdict(r), "sites_per_s": r.sites_per_s, "cpu_share": r.cpu_share, "other_s": r.other_s}
            for r in runs
        ]
        serve_needed = not {"derate", "serve"} <= skip
        port = free_port()
        proc = start_server(settings, port, 1, {"GRIDSHARE_ROLES": "serve"}) if serve_needed else None
        try:
            device: tuple[httpx.Client, str] | None = None
            if proc is not None:
                program_id = _program_id(settings, next(iter(utility.device_sites.values())))
                targets = {
                    pki.client(name).lfdi: f"/edev/{site_id}/derp/{program_id}/derc?l=100"
                    for name, site_id in utility.device_sites.items()
                }
                (workdir / "targets.json").write_text(json.dumps(targets))
                name = next(iter(utility.device_sites))
                tls = device_tls(pki, name)
                path = targets[pki.client(name).lfdi]
                wait_ready(f"https://127.0.0.1:{port}{path}", tls, proc)
                device = (httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls, timeout=5), path)
            if "derate" not in skip:
                console.print("derate latency:")
                report.derate = [
                    asdict(x) for x in measure_derate(settings, utility, device, args.trials, console)
                ]
            if "serve" not in skip and proc is not None:
                console.print(f"DERControlList of {TARGET} under load:")
                report.serving = measure_serving(
                    settings, port, workdir, pki, args.load_seconds, args.connections, args.sites, console
                )
            if device is not None:
                device[0].close()
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    print_report(console, report, runs)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str))


def _program_id(settings: Settings, site_id: int) -> int:
    ctx = build_context(settings)
    try:
        with ctx.sessions() as session:
            site = session.get(Site, site_id)
            found = current_envelope(session, site) if site is not None else None
        if found is None:
            raise SystemExit(f"no envelope published for site {site_id}")
        return found[0]
    finally:
        ctx.engine.dispose()


def print_report(console: Console, report: Report, runs: list[Throughput]) -> None:
    if runs:
        table = Table(title=f"recompute + publish, {report.networks} x {report.sites} sites, {report.store}")
        for col in ("run", "wall s", "sites/s", "compute s (sum)", "publish s (sum)", "reads+fallback s",
                    "fallback sets", "publisher CPU s", "workers CPU s", "CPU share",
                    "load before -> after"):  # fmt: skip
            table.add_column(col, justify="right")
        for r in runs:
            table.add_row(
                r.label, f"{r.wall_s:.1f}", f"{r.sites_per_s:,.0f}", f"{r.compute_sum_s:.1f}",
                f"{r.publish_sum_s:.1f}", "-" if r.other_s is None else f"{r.other_s:.1f}",
                str(r.fallback_sets), f"{r.publisher_cpu_s:.1f}",
                "-" if r.worker_cpu_s is None else f"{r.worker_cpu_s:.1f}", f"{r.cpu_share:.0%}",
                f"{r.load_before:.2f} -> {r.load_after:.2f}",
            )  # fmt: skip
        console.print(table)
        console.print(
            "compute and publish s: sums of the per-network figures in each set's detail; on a cluster the "
            "networks overlap, and a network's publish s includes waiting for its turn on the lease row"
        )
        by = {r.workers: r for r in runs if r.worker_cpu_s is not None}
        if 1 in by and 2 in by:
            one, two = by[1], by[2]
            console.print(
                f"2 workers / 1 worker: {two.sites_per_s / one.sites_per_s:.2f}x as measured (wall, "
                f"publication included); compute part per core received "
                f"{_per_core(two) / _per_core(one):.2f}x (target >= 1.7x)"
            )
            console.print(
                f"{two.sites:,} sites with 2 workers: {two.wall_s:.1f} s compute + publish "
                f"(target for 100,000 sites: <= 60 s)"
            )
        sizing(console, runs)
    if report.derate:
        table = Table(title=f"derate latency on {report.networks} x {report.sites} sites (target <= 5 s)")
        for col in ("situation", "change", "store s", "device s", "published as", "other sets meanwhile"):
            table.add_column(col, justify="right")
        for d in report.derate:
            cells = (_fmt(d["store_s"]), _fmt(d["device_s"]), d["set_reason"], str(d["others_published"]))
            table.add_row(d["situation"], d["change"], *cells)
        console.print(table)
    if report.serving:
        table = Table(title=f"DERControlList of {TARGET}'s devices (target: busy >= 90 % of quiet)")
        columns = ("situation", "requests/s", "p50 ms", "p99 ms", "errors", "sets published", "busy runs")
        for col in (*columns, "load avg"):
            table.add_column(col, justify="right")
        for s in report.serving:
            table.add_row(
                *(f"{s['requests_per_s']:.0f}" if c == "requests/s" else str(s[_KEYS[c]]) for c in columns),
                f"{s['load_before']:.2f} -> {s['load_after']:.2f}",
            )
        console.print(table)
        quiet = [s["requests_per_s"] for s in report.serving if s["situation"] == "quiet"]
        if quiet:
            mean = sum(quiet) / len(quiet)
            for s in report.serving:
                if s["situation"] != "quiet":
                    console.print(
                        f"{s['situation']} / quiet (mean of the quiet runs): {s['requests_per_s'] / mean:.0%}"
                    )


def _per_core(r: Throughput) -> float:
    """Sites per second of compute as if every worker had had a core of its own."""
    return r.sites / max(r.compute_cpu_s, 1e-9) * r.workers


def sizing(console: Console, runs: list[Throughput]) -> None:
    """1,000,000 sites on a 5-minute cycle from the measured costs: compute core-seconds per site (the
    one-worker run's workers' CPU) and the publisher's own seconds per site (the in-process
    republication's time minus its computation: reads, publication, fallback refresh, in series)."""
    one = next((r for r in runs if r.workers == 1), None)
    ref = one or runs[-1]
    compute_core_s = ref.compute_cpu_s / ref.sites
    serial = [r for r in runs if r.other_s is not None]
    inproc = serial[-1] if serial else None  # the republication when measured, else the first
    budget_s = CYCLE_S / 5
    workers = math.ceil(SIZING_SITES * compute_core_s / budget_s)
    console.print(f"\npaper sizing, {SIZING_SITES:,} sites every {CYCLE_S} s:")
    console.print(
        f"  compute ('{ref.label}'): {compute_core_s * 1000:.3f} core-ms/site -> "
        f"{SIZING_SITES * compute_core_s:,.0f} core-s per cycle: {workers} single-thread workers to finish "
        f"within {budget_s:.0f} s"
    )
    if inproc is not None:
        publish_s = inproc.publish_sum_s / inproc.sites
        publisher_s = (inproc.wall_s - inproc.compute_sum_s) / inproc.sites
        cycle_s = SIZING_SITES * publisher_s
        console.print(
            f"  publisher ('{inproc.label}'): {publish_s * 1000:.2f} s per 1,000 sites publishing, "
            f"{publisher_s * 1000:.2f} s with reads and fallback refresh -> {cycle_s:,.0f} s per cycle "
            f"on one publisher: {'fits' if cycle_s + budget_s <= CYCLE_S else 'does NOT fit'} the "
            f"{CYCLE_S} s cycle; {math.ceil(cycle_s / (CYCLE_S - budget_s))} publishers (or connections) "
            "in parallel would"
        )


if __name__ == "__main__":
    main()
