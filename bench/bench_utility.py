"""Utility-scale compute throughput: K networks x N sites on a real Dask cluster, 1 worker then 2.

Generates a synthetic utility (K suburban zone networks from `sim.feeder.suburb_document`, each with
its own seed: firm and dynamic houses, tranches, queue positions; telemetry for every site; a derate
in force on every tenth network), starts a real `dask scheduler` and W `dask worker` processes
(`--nworkers 1 --nthreads 1` each) on loopback, and times `ComputeCluster.as_completed` over all
networks: from submission to the last whole result in the caller's hands (transfer included). Prints
sites/s with one and with two workers, the ratio (target >= 1.7x), the time for all sites (target:
100,000 sites, compute + publish within 60 s), the engine's cost per site, the machine's load average
(other work on the machine slows every figure), and a paper sizing for 1,000,000 sites on a 5-minute
cycle. Publication is not run here (it stays with the single publisher): `--publish-s-per-10k` takes
the publish seconds `bench.bench_recompute` measured for 10,000 sites, to add it to the sizing.

    .venv/bin/python -m bench.bench_utility [--networks 100] [--sites 1000] [--workers 1,2]
        [--publish-s-per-10k 2.5] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gridshare.compute.cluster import ComputeCluster
from gridshare.compute.outcome import Computed
from gridshare.compute.task import Derate, NetworkTask, compute_network
from gridshare.envelopes.forecast import Telemetry
from gridshare.grid.netfile import parse_network_document
from gridshare.sim.feeder import suburb_document

T0 = 1_782_900_000  # 2026-07-01T10:00Z
DASK = Path(sys.executable).with_name("dask")
CYCLE_S = 300  # the recomputation cycle a 1,000,000-site utility must keep
SIZING_SITES = 1_000_000


def utility_tasks(
    networks: int, sites: int, now_s: int = T0, horizon_s: int = 86400, interval_s: int = 300, seed: int = 1
) -> list[NetworkTask]:
    """K zone networks of N houses each, ready to compute: a synthetic utility.

    Every site has a recent reading (so each network's forecast is telemetry carried forward, as in
    service), and every tenth network has a derate in force on its first distribution transformer.
    """
    tasks = []
    for k in range(networks):
        name = f"zone-{k:03d}"
        doc = suburb_document(sites=sites, transformers=max(1, sites // 50), seed=seed + k, name=name)
        nf = parse_network_document(doc, source=name)
        measured = datetime.fromtimestamp(now_s - 30, UTC)
        telemetry = {
            s.id: Telemetry(measured, load_w=0.5 * s.load_w, generation_w=0.6 * s.pv_w) for s in nf.sites
        }
        derates = (Derate("tx-1", 0.7, now_s - 600),) if k % 10 == 9 else ()
        tasks.append(
            NetworkTask(
                name,
                nf,
                now_s,
                now_s - now_s % interval_s,
                horizon_s,
                interval_s,
                derates=derates,
                telemetry=telemetry,
            )
        )
    return tasks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dask_cluster(n_workers: int, workdir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`dask scheduler` and `n_workers` x `dask worker --nworkers 1 --nthreads 1` on loopback; kill by PID."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = (workdir / f"dask-{n_workers}w.log").open("wb")
    env = env or {}

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(DASK), *args], cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )

    procs = [
        spawn(
            "scheduler", "--host", "127.0.0.1", "--port", str(port),
            "--no-dashboard", "--dashboard-address", "127.0.0.1:0",  # its HTTP server: any free port
        )
    ]  # fmt: skip
    try:
        for i in range(n_workers):
            procs.append(
                spawn(
                    "worker", address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
                    "--no-dashboard", "--name", f"w{i}", "--local-directory", str(workdir / f"w{i}"),
                )
            )  # fmt: skip
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=15)
        log.close()


@dataclass(frozen=True)
class Run:
    workers: int
    sites: int
    networks: int
    failed: int
    wall_s: float
    engine_s: float  # sum of the workers' engine time over every network (wall clock)
    engine_cpu_s: float  # the same in processor time: the cost, whatever else runs on the machine
    result_bytes: int  # pickled size of all results (what crosses the wire to the publisher), from a sample
    load_before: float
    load_after: float

    @property
    def sites_per_s(self) -> float:
        return self.sites / self.wall_s

    @property
    def engine_s_per_site(self) -> float:
        return self.engine_s / self.sites

    @property
    def cpu_s_per_site(self) -> float:
        return self.engine_cpu_s / self.sites

    @property
    def cpu_share(self) -> float:
        """How much of a core each worker got while computing (1.0: a core of its own)."""
        return self.engine_cpu_s / self.engine_s if self.engine_s else 0.0


def measure(tasks: list[NetworkTask], n_workers: int, workdir: Path, saturation: str = "") -> Run:
    """Time all `tasks` on a fresh cluster of `n_workers` (warmed up: imports done on every worker).

    `saturation` sets the scheduler's worker-saturation (how many tasks it hands a worker ahead of
    time; Dask's default 1.1 means a scheduler round trip between two tasks of a one-thread worker).
    """
    env = {"DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": saturation} if saturation else {}
    with (
        dask_cluster(n_workers, workdir, env) as address,
        ComputeCluster(address, connect_timeout_s=60) as cluster,
    ):
        cluster.wait_for_workers(n_workers, timeout_s=120)
        cluster.client.run(compute_network, tasks[0])  # imports and first-call costs, on every worker
        load_before = os.getloadavg()[0]
        engine_s = engine_cpu_s = 0.0
        sampled_bytes = sampled_sites = 0
        failed = 0
        t0 = time.perf_counter()
        for outcome in cluster.as_completed(tasks, timeout_s=1800):
            if isinstance(outcome, Computed):
                engine_s += outcome.result.compute_s
                engine_cpu_s += outcome.result.cpu_s
                if sampled_sites < 5 * tasks[0].n_sites:  # a sample: pickling costs the caller time
                    sampled_bytes += len(pickle.dumps(outcome.result, protocol=5))
                    sampled_sites += len(outcome.result.site_ids)
            else:
                failed += 1
                print(f"  {outcome.network}: {outcome.kind}: {outcome.detail}", flush=True)
        wall_s = time.perf_counter() - t0
        return Run(
            n_workers,
            sum(t.n_sites for t in tasks),
            len(tasks),
            failed,
            wall_s,
            engine_s,
            engine_cpu_s,
            round(sampled_bytes / max(sampled_sites, 1) * sum(t.n_sites for t in tasks)),
            load_before,
            os.getloadavg()[0],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="utility-scale compute throughput on Dask")
    parser.add_argument("--networks", type=int, default=100)
    parser.add_argument("--sites", type=int, default=1000, help="sites per network")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 1,2")
    parser.add_argument(
        "--publish-s-per-10k",
        type=float,
        default=None,
        help="publish seconds for 10,000 sites (bench.bench_recompute, 'publish s'), for the sizing",
    )
    parser.add_argument(
        "--worker-saturation",
        default="",
        help="the scheduler's distributed.scheduler.worker-saturation (e.g. 2 or inf); default: Dask's",
    )
    parser.add_argument("--quick", action="store_true", help="10 networks x 200 sites: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.networks, args.sites = 10, 200
    counts = [int(w) for w in args.workers.split(",")]
    t = time.perf_counter()
    tasks = utility_tasks(args.networks, args.sites)
    n_sites = sum(task.n_sites for task in tasks)
    print(
        f"synthetic utility: {args.networks} networks x {args.sites} sites = {n_sites:,} sites, "
        f"{tasks[0].n_intervals} x {tasks[0].interval_s} s intervals, {tasks[0].policy} "
        f"(generated in {time.perf_counter() - t:.1f} s); {os.cpu_count()} cores",
        flush=True,
    )
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="gs-bench-utility-") as tmp:
        for w in counts:
            run = measure(tasks, w, Path(tmp), args.worker_saturation)
            runs.append(run)
            print(
                f"{w} worker(s): {run.wall_s:6.1f} s for {run.sites:,} sites = "
                f"{run.sites_per_s:7.0f} sites/s; "
                f"engine {run.engine_s_per_site * 1000:.3f} ms/site wall, "
                f"{run.cpu_s_per_site * 1000:.3f} ms/site CPU (a worker got {run.cpu_share:.0%} of a core); "
                f"{run.failed} failed; "
                f"results {run.result_bytes / run.sites / 1024:.1f} KiB/site; "
                f"load average {run.load_before:.2f} -> {run.load_after:.2f}",
                flush=True,
            )
    base = runs[0]
    for run in runs[1:]:
        print(
            f"ratio {run.workers}w/{base.workers}w: {run.sites_per_s / base.sites_per_s:.2f}x as measured, "
            f"{corrected_sites_per_s(run) / corrected_sites_per_s(base):.2f}x per core received "
            "(target >= 1.7x)"
        )
    best = runs[-1]
    print(
        f"{best.sites:,} sites with {best.workers} worker(s): compute {best.wall_s:.1f} s "
        "(target: compute + publish <= 60 s)"
    )
    sizing(base, best, args.publish_s_per_10k)


def corrected_sites_per_s(run: Run) -> float:
    """Throughput as if each worker had had a core of its own: measured sites/s over the share it got."""
    return run.sites_per_s / max(run.cpu_share, 1e-9)


def sizing(one: Run, best: Run, publish_s_per_10k: float | None) -> None:
    """What 1,000,000 sites on a 5-minute cycle need, from the measured per-site costs.

    Uses the one-worker run corrected for the share of a core the worker got (other work on the
    machine), so transfer and the caller's checks are counted, and the scaling of the largest run
    corrected the same way.
    """
    per_site_s = 1.0 / corrected_sites_per_s(one)  # core-seconds per site, transfer included
    core_s = SIZING_SITES * per_site_s
    efficiency = (
        corrected_sites_per_s(best) / corrected_sites_per_s(one) / best.workers if best.workers > 1 else 1.0
    )
    budget_s = CYCLE_S / 5  # compute within a fifth of the cycle: room for publication, retries, deadlines
    workers = math.ceil(core_s / budget_s / min(max(efficiency, 0.5), 1.0))
    bytes_cycle = SIZING_SITES * best.result_bytes / best.sites
    print(f"\npaper sizing, {SIZING_SITES:,} sites every {CYCLE_S} s:")
    print(
        f"  compute: {per_site_s * 1000:.3f} core-ms/site (one worker, load-corrected; engine alone "
        f"{one.cpu_s_per_site * 1000:.3f} CPU-ms/site) -> {core_s:,.0f} core-s per cycle"
    )
    print(
        f"  within {budget_s:.0f} s of the cycle at {min(efficiency, 1.0):.0%} parallel efficiency "
        f"(load-corrected): {workers} single-thread workers (~{math.ceil(workers / 8)} machines of 8 cores)"
    )
    print(
        f"  results to the publisher: {bytes_cycle / 2**30:.1f} GiB per cycle "
        f"({bytes_cycle / budget_s * 8 / 1e9:.1f} Gbit/s if it all arrives within {budget_s:.0f} s)"
    )
    if publish_s_per_10k is not None:
        publish_s = publish_s_per_10k * SIZING_SITES / 10_000
        print(
            f"  publish: {publish_s_per_10k:.2f} s per 10,000 sites (bench_recompute) -> "
            f"{publish_s:,.0f} s per cycle on one publisher: "
            f"{'fits' if publish_s + budget_s <= CYCLE_S else 'does NOT fit'} the {CYCLE_S} s cycle"
        )


if __name__ == "__main__":
    main()
