"""Per-network envelope computation on a real Dask cluster: `dask scheduler` and two `dask worker`
processes on loopback, started here and stopped by PID.

What a utility's operator would notice: the cluster computes exactly what the service computes
in-process; a worker killed mid-task costs a retry elsewhere, never half a network's limits; a network
that is late, or whose input is bad, is reported failed by name while the others come back; a scheduler
that is not there is one clear error naming the setting.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import select

from gridshare.compute.cluster import ComputeCluster, ComputeClusterUnavailable
from gridshare.compute.outcome import Computed, Failed
from gridshare.compute.task import Derate, HeldLimits, NetworkResult, NetworkTask, compute_network
from gridshare.core.settings import Settings, SettingsError, load_settings
from gridshare.envelopes.forecast import Telemetry
from gridshare.grid.netfile import parse_network_document
from gridshare.process.demo import DEMO_FILE, seed_demo
from gridshare.recompute.inputs import active_network
from gridshare.recompute.scheduler import Recomputer
from gridshare.sim.feeder import suburb_document
from gridshare.store.db import transaction
from gridshare.store.models import AssetDerate, Site
from gridshare.store.publication.envelopes import current_set_id
from gridshare.store.publication.network_docs import store_network
from gridshare.store.publication.status import read_statuses
from tests.support.engine import FEEDER, export_limits_w
from tests.support.servers import RunningServer

T0 = 1_782_900_000  # 2026-07-01T10:00Z
START_S = T0 - T0 % 300
DASK = Path(sys.executable).with_name("dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def task(
    name: str,
    sites: int = 120,
    seed: int = 1,
    horizon_s: int = 6 * 3600,
    policy: str = "pro-rata",
    **extra: object,
) -> NetworkTask:
    doc = suburb_document(sites=sites, transformers=max(1, sites // 30), seed=seed, name=name)
    nf = parse_network_document(doc, source=name)
    return NetworkTask(name, nf, T0, START_S, horizon_s, 300, policy, **extra)  # type: ignore[arg-type]


def heavy(name: str, **extra: object) -> NetworkTask:
    """A network that takes a second or more (max-total is a linear programme over the whole day)."""
    return task(name, sites=300, seed=7, horizon_s=86400, policy="max-total", **extra)


def assert_same(a: NetworkResult, b: NetworkResult) -> None:
    assert a.site_ids == b.site_ids
    np.testing.assert_array_equal(a.export_limit_w, b.export_limit_w)
    np.testing.assert_array_equal(a.import_limit_w, b.import_limit_w)
    assert a.planned.envelopes.interval_starts == b.planned.envelopes.interval_starts
    assert a.planned.binding == b.planned.binding
    assert a.planned.isolated_now == b.planned.isolated_now
    for direction, series in a.planned.series.items():
        other = b.planned.series[direction]
        assert series.names == other.names
        np.testing.assert_array_equal(series.headroom, other.headroom)
        np.testing.assert_array_equal(series.binding, other.binding)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Workers first, then the scheduler: SIGTERM by PID, SIGKILL whatever is left after 10 s."""
    for p in reversed(procs):
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `dask scheduler` and two `dask worker` processes (one thread each) on loopback."""
    tmp = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = (tmp / "dask.log").open("wb")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                # its HTTP server (health, metrics) on loopback too, on any free port
                [
                    str(DASK),
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-dashboard",
                    "--dashboard-address",
                    "127.0.0.1:0",
                ],
                cwd=tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        str(DASK), "worker", address, "--nworkers", "1", "--nthreads", "1",
                        "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}",
                        "--local-directory", str(tmp / f"w{i}"),
                    ],
                    cwd=tmp,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        with ComputeCluster(address, connect_timeout_s=30) as cluster:
            cluster.wait_for_workers(2, timeout_s=60)
        yield address
    finally:
        stop(procs)
        log.close()


@pytest.fixture
def cluster(scheduler: str) -> Iterator[ComputeCluster]:
    with ComputeCluster(scheduler, connect_timeout_s=10, task_timeout_s=60) as c:
        c.wait_for_workers(2, timeout_s=60)  # a worker killed by the previous test has come back
        yield c


def test_cluster_results_equal_the_in_process_computation(cluster: ComputeCluster) -> None:
    tasks = [
        task("plain", seed=1),
        task("tranche", seed=2, policy="tranche"),
        # an outage planned 2 h ahead (three stretches of the horizon) and a derate in force now
        task(
            "derated",
            seed=3,
            derates=(Derate("tx-2", 0.0, T0 + 7200, T0 + 10800), Derate("tx-1", 0.5, T0 - 60)),
        ),
        # telemetry carried forward, and one site held at its fallback limits (untrusted data)
        task(
            "measured",
            seed=4,
            telemetry={"house-1-1": Telemetry(datetime.fromtimestamp(T0 - 30, UTC), 800.0, 4200.0)},
            held={"house-1-2": HeldLimits(1500.0, 5000.0)},
            inputs_key=(7, 3, 0),
        ),
    ]
    outcomes = cluster.compute(tasks)

    assert [o.network for o in outcomes] == [t.network for t in tasks]
    assert all(isinstance(o, Computed) for o in outcomes), outcomes
    workers = set()
    for t, o in zip(tasks, outcomes, strict=True):
        assert isinstance(o, Computed)
        assert_same(o.result, compute_network(t))
        assert o.result.inputs_key == t.inputs_key
        workers.add(o.result.worker)
    assert os.getpid() not in {int(w.rsplit(":", 1)[1]) for w in workers}  # computed elsewhere
    derated = outcomes[2].result  # type: ignore[union-attr]
    # the outage zeroes the sites behind tx-2 for its hour, and only then
    behind = [i for i, s in enumerate(derated.site_ids) if s.startswith("house-2-")]
    assert np.all(derated.export_limit_w[24:36, behind] == 0)
    assert np.any(derated.export_limit_w[:24, behind] > 0)
    held = outcomes[3].result  # type: ignore[union-attr]
    col = held.site_ids.index("house-1-2")
    assert np.all(held.export_limit_w[:, col] == 1500.0)


def test_a_worker_killed_mid_task_costs_a_retry_never_half_a_result(cluster: ComputeCluster) -> None:
    t = heavy("killed")
    reference = compute_network(t)
    pending = cluster.submit(t)
    pids: dict[str, int] = cluster.client.run(os.getpid)
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        for address, keys in cluster.client.processing().items():
            if pending.future.key in keys:
                victim = address
        time.sleep(0.05)
    assert victim is not None, "the task never started"
    time.sleep(0.3)  # well inside a computation of a second or more
    assert not pending.future.done()
    os.kill(pids[victim], signal.SIGKILL)

    (outcome,) = cluster._collect({t.network: pending})

    assert isinstance(outcome, Computed), outcome
    assert_same(outcome.result, reference)
    assert int(outcome.result.worker.rsplit(":", 1)[1]) != pids[victim]


def test_late_and_bad_networks_fail_by_name_while_the_others_come_back(cluster: ComputeCluster) -> None:
    tasks = [
        heavy("late", timeout_s=0.2),
        task("bad", policy="first-come"),  # no such allocation rule
        task("fine", seed=5),
    ]
    batch = cluster.submit_networks(tasks)

    assert set(batch.computed) == {"fine"}
    assert batch.failed["late"].kind == "timeout"
    assert batch.failed["bad"].kind == "bad input"
    assert "policy" in batch.failed["bad"].detail
    assert_same(batch.computed["fine"], compute_network(tasks[2]))


def test_an_unreachable_scheduler_is_one_clear_error() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(compute_scheduler_address=address, compute_connect_timeout_s=1)
    with pytest.raises(ComputeClusterUnavailable) as caught:
        ComputeCluster.from_settings(settings).start()
    message = str(caught.value)
    assert address in message
    assert "compute_scheduler_address" in message
    assert "dask scheduler" in message


def test_a_malformed_scheduler_address_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match=r"compute_scheduler_address.*tcp://host:8786"):
        load_settings(compute_scheduler_address="http://scheduler:8786")
    with pytest.raises(SettingsError, match="port"):
        load_settings(compute_scheduler_address="tcp://scheduler:87860")
    assert load_settings(compute_scheduler_address="").compute_scheduler_address is None


def test_the_in_process_cluster_reports_a_lost_worker_when_no_retry_is_left() -> None:
    """The default (no scheduler address): worker processes inside the service. With no failure allowed
    a worker killed mid-task leaves its network failed as "worker lost", with no result at all."""
    with ComputeCluster(local_workers=1, local_allowed_failures=0, task_timeout_s=60) as cluster:
        (fine,) = cluster.compute([task("first", seed=6)])
        assert isinstance(fine, Computed)
        pending = cluster.submit(heavy("doomed"))
        (pid,) = cluster.client.run(os.getpid).values()
        deadline = time.monotonic() + 30
        while not any(pending.future.key in keys for keys in cluster.client.processing().values()):
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        (outcome,) = cluster._collect({"doomed": pending})
    assert isinstance(outcome, Failed), outcome
    assert outcome.kind == "worker lost"
    assert not hasattr(outcome, "result")


def test_a_stored_derate_ships_as_plain_values() -> None:
    from gridshare.store.models import AssetDerate

    row = AssetDerate(asset="tx-2", factor=0.0, from_s=T0 + 60, until_s=None, created_s=T0, created_by="op")
    derate = Derate.of(row)
    assert derate == Derate("tx-2", 0.0, T0 + 60, None)
    assert not derate.in_force(T0) and derate.in_force(T0 + 60) and derate.in_force(T0 + 10**9)


# -- the running engine on the cluster ---------------------------------------------------------------


def _outage_behind(server: RunningServer, name: str) -> None:
    """An outage of the asset feeding `name`'s site, as the operator API stores it."""
    site = server.ctx.sessions().execute(select(Site).where(Site.lfdi == server.pki.client(name).lfdi))
    nmi = site.scalar_one().nmi
    with server.ctx.sessions() as s:
        _, nf = active_network(s, FEEDER)
    node = next(x.node for x in nf.sites if x.nmi == nmi)
    feeder = next(b.name for b in nf.network.branches if b.to_node == node)
    with transaction(server.ctx.sessions) as s:
        now_s = server.ctx.now_s()
        s.add(AssetDerate(asset=feeder, factor=0.0, from_s=now_s, created_s=now_s, created_by="test"))


def test_the_engine_publishes_what_the_cluster_computed(server: RunningServer, scheduler: str) -> None:
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    seed_demo(server.ctx, server.pki)
    server.ctx.settings.compute_scheduler_address = scheduler
    engine = Recomputer(server.ctx)
    try:
        assert engine.run_once("on the cluster").status == "published"
        on_cluster = export_limits_w(server, "device-1")
        assert on_cluster and max(on_cluster) > 0
        _outage_behind(server, "device-1")
        assert engine.run_once("outage, on the cluster").status == "published"
        assert set(export_limits_w(server, "device-1")) == {0}  # the outage reached the device
    finally:
        engine.stop()
    # the same inputs computed in the publisher's process give the same limits
    server.ctx.settings.compute_scheduler_address = None
    local = Recomputer(server.ctx)
    try:
        assert local.run_once("in process").status == "published"
        assert set(export_limits_w(server, "device-1")) == {0}
    finally:
        local.stop()


def test_an_unreachable_cluster_puts_the_network_on_fallback_not_on_old_limits(server: RunningServer) -> None:
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    seed_demo(server.ctx, server.pki)
    server.ctx.settings.compute_connect_timeout_s = 2
    server.ctx.settings.compute_scheduler_address = f"tcp://127.0.0.1:{free_port()}"
    engine = Recomputer(server.ctx)
    try:
        outcome = engine.run_once("cluster down")
    finally:
        engine.stop()
    assert outcome.status == "failed" and "ComputeClusterUnavailable" in outcome.detail, outcome
    assert outcome.action == "fallback published", outcome
    assert export_limits_w(server, "device-1"), "the device has fallback-valued limits, not nothing"


def test_many_networks_compute_on_the_cluster_side_by_side_and_each_publishes(
    server: RunningServer, scheduler: str
) -> None:
    """The demo feeder and three more networks (copies with their own NMIs): all go to the cluster in
    one run, each is published as its own set, and an outage on one reaches that network's devices."""
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    seed_demo(server.ctx, server.pki)
    names = [f"zone-{k}" for k in range(3)]
    with transaction(server.ctx.sessions) as s:
        for k, name in enumerate(names):
            doc = yaml.safe_load(DEMO_FILE.read_text())
            doc["name"] = name
            for site in doc["sites"]:
                if site.get("nmi"):
                    site["nmi"] = f"Z{k}{site['nmi']}"[:32]
            store_network(s, doc, "test", server.ctx.now_s())
    server.ctx.settings.compute_scheduler_address = scheduler
    engine = Recomputer(server.ctx)
    try:
        outcome = engine.run_once("four networks on the cluster")
        assert outcome.status == "published", outcome.detail
        with server.ctx.sessions() as s:
            sets = {name: current_set_id(s, name) for name in [FEEDER, *names]}
            statuses = {st.feeder: st.state for st in read_statuses(s)}
        assert all(sets.values()) and len(set(sets.values())) == 4, sets
        assert statuses == dict.fromkeys([FEEDER, *names], "dynamic")
        before = {name: set_id for name, set_id in sets.items() if name != FEEDER}
        _outage_behind(server, "device-1")  # on the demo feeder
        assert engine.run_once("outage", network=FEEDER).status == "published"
        assert set(export_limits_w(server, "device-1")) == {0}
        with server.ctx.sessions() as s:
            assert {name: current_set_id(s, name) for name in names} == before  # the others untouched
    finally:
        engine.stop()
