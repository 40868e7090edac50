"""Run the mTLS endpoint with uvicorn: one process, or several sharing the port through SO_REUSEPORT.

uvicorn's own worker mode shares one accepting socket, and with long keep-alive connections a burst
can land on a single worker (design notes §3b); separate SO_REUSEPORT sockets let the kernel spread
connections across processes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import signal
import socket
import sys
import threading

import anyio.to_thread
import uvicorn

from gridshare.certs.devpki import INDEX_FILE, DevPki, ensure_dev_pki, load_dev_pki
from gridshare.core.logs import use_format
from gridshare.core.settings import Settings
from gridshare.process.demo import seed_demo
from gridshare.process.tls_files import tls_files
from gridshare.recompute.scheduler import Recomputer
from gridshare.server.app import create_asgi
from gridshare.server.listener import device_config
from gridshare.server.notify.service import NotificationService
from gridshare.server.operator.run import operator_server
from gridshare.server.shared.context import AppContext, build_context
from gridshare.server.shared.metrics import start_sharing, use_metrics_dir
from gridshare.server.tls import server_context
from gridshare.store.db import startup_lock
from gridshare.store.queries.access import list_tokens
from gridshare.store.queries.seed import register_dev_aggregators, seed_baseline

log = logging.getLogger(__name__)


def _socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def device_config_for(ctx: AppContext) -> uvicorn.Config:
    """uvicorn for the CSIP-AUS endpoint: mTLS, or plain HTTP behind a TLS-terminating proxy."""
    settings = ctx.settings
    ssl_context = None
    if not settings.behind_proxy:
        files = tls_files(settings)
        ssl_context = server_context(files.cert_file, files.key_file, files.ca_file)
    return device_config(create_asgi(ctx), settings, ssl_context)


def run_worker(settings: Settings, reuse_port: bool, with_operator: bool = True) -> None:
    """One serving process: its own cache and listening socket (and the operator API in one)."""
    use_format(settings.log_format)  # a spawned worker starts with no logging configured
    ctx = build_context(settings, schema_log="debug")  # the parent has said what it did to the schema
    ctx.contacts.start(ctx.sessions, settings.contact_flush_s)
    sharing = threading.Event()
    start_sharing(sharing)
    config = device_config_for(ctx)
    server = uvicorn.Server(config)
    device_socket = _socket(settings.host, settings.port, reuse_port)
    operator_socket = _operator_socket(settings) if with_operator else None
    try:
        pairs = [(server, device_socket)]
        if operator_socket is not None:
            pairs.append(
                (operator_server(ctx, settings.operator_host, settings.operator_port), operator_socket)
            )
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(_serve_together(pairs, settings.worker_threads))
    finally:
        sharing.set()
        ctx.contacts.stop()  # writes the last contacts recorded


def run_operator_only(settings: Settings) -> None:
    """A process without the serve role that still hosts the operator API (the publisher, typically)."""
    ctx = build_context(settings, schema_log="debug")
    sock = _operator_socket(settings)
    if sock is None:
        raise SystemExit(f"operator API: port {settings.operator_port} on {settings.operator_host} is taken")
    operator_server(ctx, settings.operator_host, settings.operator_port).run(sockets=[sock])


def _operator_socket(settings: Settings) -> socket.socket | None:
    """The operator listener; if its port is taken the device endpoint still serves (devices come first)."""
    try:
        return _socket(settings.operator_host, settings.operator_port, reuse_port=False)
    except OSError as exc:
        log.error(
            "operator API cannot listen on %s:%d (%s); serving the CSIP-AUS endpoint without it",
            settings.operator_host,
            settings.operator_port,
            exc,
        )
        return None


async def _serve_together(pairs: list[tuple[uvicorn.Server, socket.socket]], worker_threads: int) -> None:
    """Run several uvicorn servers in one loop; when one stops (signal or failure), stop the others.

    Their synchronous handlers and store work share this loop's `worker_threads` threads.
    """
    anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads
    collect_garbage_for_serving()
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in pairs]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server, _sock in pairs:
        server.should_exit = True
    await asyncio.gather(*tasks)


#: Container allocations (net of frees) between two collections of the youngest generation, then how
#: many of each generation's collections before the next one up: CPython's defaults (700, 10, 10) ran
#: one every few requests of a busy serving process. These are the thresholds measured.
_GC_THRESHOLDS = (50_000, 20, 20)


def collect_garbage_for_serving() -> None:
    """Keep the cyclic garbage collector off a serving process's hot path.

    Everything built before serving (modules, mappers, the XML schema, settings: over 200,000 objects)
    is frozen out of every later collection, and the youngest generation is collected less often. With
    CPython's defaults the full collections that walked it cost the serving process about a quarter of
    its CPU in a 500-device conversation and stopped the loop for up to 150 ms at a time, most of its
    p99 (docs/bench-conversation.md, "Garbage collection").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def describe_dev_pki(pki: DevPki, created: bool) -> str:
    """What the development PKI holds and where, so a first-time user can point a client at it."""
    devices = ", ".join(c.name for c in pki.devices) or "none"
    aggregators = ", ".join(c.name for c in pki.aggregators) or "none"
    what = "generated a development PKI" if created else "using the development PKI"
    return (
        f"{what} in {pki.directory}: trust anchor {pki.ca_path.name}, server certificate "
        f"{pki.server_cert_path.name}; device certificates {devices}; aggregator certificates "
        f"{aggregators} (NAME.pem and NAME.key each; index {INDEX_FILE})"
    )


def token_hint(ctx: AppContext) -> str:
    """How to get an operator token for this very store: the exact command."""
    settings = ctx.settings
    if settings.database_url:
        url = ctx.engine.url.render_as_string(hide_password=True)
        command = f"GRIDSHARE_DATABASE_URL='{url}' gridshare admin token create --role operator"
    else:
        command = f"gridshare admin token create --role operator --data-dir {settings.data_dir.resolve()}"
    with ctx.sessions() as session:
        active = sum(1 for t in list_tokens(session) if t.revoked_s is None)
    if active:
        return f"operator API tokens: {active} active; another with: {command}"
    return f"no operator API token yet; create one with: {command}"


def prepare_store(ctx: AppContext) -> DevPki | None:
    """Bring an empty store to a usable state, once, however many processes start together.

    Under the start-up lock (store/db.py): the schema upgrade is already done by build_context; the
    baseline program, the dev PKI (generated in data_dir/pki only when we terminate TLS ourselves; behind
    a proxy an existing one is used if present, so the development devices still work through it) and
    the demo feeder are each written by whichever process gets there first.
    """
    settings = ctx.settings
    with startup_lock(ctx.engine):
        seed_baseline(ctx)
        pki = None
        if settings.dev_pki and not settings.tls_cert_file:
            existed = (settings.pki_dir / INDEX_FILE).is_file()
            if not settings.behind_proxy:
                pki = ensure_dev_pki(settings.pki_dir)
            elif existed:
                pki = load_dev_pki(settings.pki_dir)
            if pki is not None:
                register_dev_aggregators(ctx, pki.aggregators)
                log.info("%s", describe_dev_pki(pki, created=not existed))
        if settings.demo_network:
            seed_demo(ctx, pki)
    return pki


class _Background:
    """This process's background jobs, by role: the envelope engine and the notifier."""

    def __init__(self, ctx: AppContext) -> None:
        roles = ctx.settings.roles
        # The engine: scheduled, and on operator changes (it watches the store). The publisher lock keeps
        # a second publishing process on the same database from publishing too (store/publication/lease.py).
        self.recomputer = Recomputer(ctx) if "publish" in roles else None
        # Notifications to subscribers (durable outbox; two notifiers never queue or send one twice).
        self.notifications = NotificationService(ctx) if "notify" in roles else None

    def start(self) -> None:
        if self.recomputer is not None:
            self.recomputer.start()
        if self.notifications is not None:
            self.notifications.start()

    def stop(self) -> None:
        if self.notifications is not None:
            self.notifications.stop()
        if self.recomputer is not None:
            self.recomputer.stop()


def serve(settings: Settings, workers: int = 1) -> None:
    """Prepare the store once, start this process's roles, then run until interrupted."""
    roles = settings.roles
    ctx = build_context(settings)
    prepare_store(ctx)
    store = ctx.engine.url.render_as_string(hide_password=True)
    log.info("roles: %s; store %s", ", ".join(roles), store)
    if "serve" in roles:
        if settings.behind_proxy:
            proxies = ", ".join(settings.trusted_proxies)
            door = f"http://{settings.host}:{settings.port}/dcap behind a TLS proxy ({proxies})"
        else:
            door = (
                f"https://{settings.host}:{settings.port}/dcap (trust anchor {tls_files(settings).ca_file})"
            )
        log.info("CSIP-AUS endpoint on %s, %d worker(s)", door, workers)
    elif workers > 1:
        log.warning("--workers %d ignored: this process does not serve devices (no serve role)", workers)
    if "operator" in roles:
        log.info(
            "operator API on http://%s:%d (docs at /docs)", settings.operator_host, settings.operator_port
        )
        log.info("%s", token_hint(ctx))
    background = _Background(ctx)
    background.start()
    try:
        if "serve" not in roles:
            if "operator" in roles:
                run_operator_only(settings)
            else:
                _wait_for_signal()
        elif workers == 1:
            run_worker(settings, reuse_port=False, with_operator="operator" in roles)
        else:
            _run_workers(settings, workers)
    finally:
        background.stop()


def _wait_for_signal() -> None:
    """A process with background roles only: run them until SIGTERM or SIGINT."""
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop.wait(3600):
        pass
    log.info("stopping")


def _run_workers(settings: Settings, workers: int) -> None:
    """N serving processes on one port (SO_REUSEPORT); the first also hosts the operator API."""
    # Each worker counts its own requests and shares its tallies through files in one directory.
    use_metrics_dir(settings.data_dir / "metrics")
    spawn = multiprocessing.get_context("spawn")
    with_operator = "operator" in settings.roles
    procs = [
        spawn.Process(target=run_worker, args=(settings, True, with_operator and i == 0), daemon=True)
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()

    def _stop(_signum: int, _frame: object) -> None:
        for proc in procs:
            proc.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for proc in procs:
        proc.join()
