"""A GridShare server for one simulation: its own process, its own store, the simulator's clock.

A separate process gives the server a core of its own (the fleet's clients and physics run in the
simulator's). It is started the way `gridshare serve` starts, with three differences a simulation
needs: the clock is the shared simulated one, the scenario's network is the active network, and
the envelope engine runs on simulated time (every `recompute_interval_s` simulated seconds, and
on request once the fleet has registered) instead of on the wall clock's scheduler.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridshare.sim.clock import SharedClock

log = logging.getLogger("gridshare.sim")


@dataclass(frozen=True)
class ServerPlan:
    data_dir: Path
    port: int
    pki_dir: Path
    network_doc: dict[str, Any]
    policy: str
    recompute_interval_s: int
    database_url: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


class SpawnedServer:
    """Start, drive and stop the simulation's server process."""

    def __init__(self, plan: ServerPlan, clock: SharedClock) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.plan = plan
        self._ready = ctx.Event()
        self._stop = ctx.Event()
        self._commands: Any = ctx.Queue()
        self._replies: Any = ctx.Queue()
        self._process = ctx.Process(
            target=_main,
            args=(plan, clock, self._ready, self._stop, self._commands, self._replies),
            name="gridshare-sim-server",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.plan.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        self._process.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.2):
            if not self._process.is_alive():
                raise RuntimeError(
                    f"the simulation server exited during start-up (code {self._process.exitcode})"
                )
            if time.monotonic() > deadline:
                self._process.kill()
                raise RuntimeError("the simulation server did not start in time")

    def recompute(self, reason: str, timeout_s: float = 300.0) -> dict[str, Any]:
        """Ask for a recomputation now and wait for its outcome."""
        self._commands.put(("recompute", reason))
        kind, payload = self._replies.get(timeout=timeout_s)
        assert kind == "outcome"
        return payload

    def stop(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Stop the server; returns every recomputation's outcome (simulated time, status, seconds)."""
        self._stop.set()
        outcomes: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                kind, payload = self._replies.get(timeout=0.5)
            except queue.Empty:
                if not self._process.is_alive():
                    break
                continue
            if kind == "outcomes":
                outcomes = payload
                break
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        return outcomes


def _outcome(o: Any, at_s: float) -> dict[str, Any]:
    return {
        "at_s": int(at_s),
        "status": o.status,
        "reason": o.reason,
        "detail": o.detail,
        "action": o.action,  # a failure: what the failure policy did ("fallback published" | "expiring")
        "compute_s": round(o.compute_s, 3),
        "publish_s": round(o.publish_s, 3),
        "blocks_new": o.summary.blocks_new if o.summary else 0,
    }


def _main(plan: ServerPlan, clock: SharedClock, ready: Any, stop: Any, commands: Any, replies: Any) -> None:
    """The server process: prepare the store, serve over mTLS in a thread, drive the engine here."""
    import uvicorn

    from gridshare.certs.devpki import load_dev_pki
    from gridshare.core.settings import Settings
    from gridshare.recompute.scheduler import Recomputer
    from gridshare.server.app import create_asgi
    from gridshare.server.listener import device_config
    from gridshare.server.shared.context import build_context
    from gridshare.server.tls import server_context
    from gridshare.store.db import transaction
    from gridshare.store.publication.network_docs import store_network
    from gridshare.store.queries.seed import register_dev_aggregators, seed_baseline

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    pki = load_dev_pki(plan.pki_dir)
    settings = Settings(
        data_dir=plan.data_dir,
        database_url=plan.database_url,
        host="127.0.0.1",
        port=plan.port,
        tls_cert_file=pki.server_cert_path,
        tls_key_file=pki.server_key_path,
        tls_ca_file=pki.ca_path,
        allocation_policy=plan.policy,
        recompute_interval_s=plan.recompute_interval_s,
        demo_network=False,
        **{"keep_alive_timeout_s": 75.0, **plan.settings},
    )
    ctx = build_context(settings, clock)
    seed_baseline(ctx)
    register_dev_aggregators(ctx, pki.aggregators)
    with transaction(ctx.sessions) as session:
        store_network(session, plan.network_doc, "simulator", ctx.now_s())
    tls = server_context(pki.server_cert_path, pki.server_key_path, pki.ca_path)
    config = device_config(create_asgi(ctx), settings, tls, host="127.0.0.1", port=plan.port, backlog=4096)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.02)
    engine = Recomputer(ctx, holder="simulator")
    outcomes: list[dict[str, Any]] = []
    ready.set()
    next_due: float | None = None
    try:
        while not stop.is_set():
            try:
                command, reason = commands.get(timeout=0.05)
            except queue.Empty:
                command = None
            if command == "recompute":
                outcome = engine.run_once(reason)
                outcomes.append(_outcome(outcome, clock.now()))
                replies.put(("outcome", outcomes[-1]))
            if not clock.running:
                continue
            engine.tick()  # derate deadlines, on the simulated clock like everything else
            now = clock.now()
            if next_due is None:
                next_due = clock.start_s + plan.recompute_interval_s
            if now >= next_due:
                outcome = engine.run_once("scheduled (simulated time)")
                outcomes.append(_outcome(outcome, now))
                while next_due <= clock.now():
                    next_due += plan.recompute_interval_s
    finally:
        engine.stop()
        server.should_exit = True
        thread.join(timeout=10)
        replies.put(("outcomes", outcomes))
        ctx.engine.dispose()
