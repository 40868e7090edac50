"""Run the mTLS endpoint with uvicorn: one process, or several sharing the port through SO_REUSEPORT.

uvicorn's own worker mode shares one accepting socket, and with long keep-alive connections a burst
can land on a single worker (design notes §3b); separate SO_REUSEPORT sockets let the kernel spread
connections across processes.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import socket
import sys

import uvicorn

from gridshare.certs.devpki import INDEX_FILE, DevPki, ensure_dev_pki
from gridshare.core.settings import Settings
from gridshare.recompute.demo import seed_demo
from gridshare.recompute.service import Recomputer
from gridshare.server.app import create_asgi
from gridshare.server.bootstrap import build_context, register_dev_aggregators, seed_baseline, tls_files
from gridshare.server.context import AppContext
from gridshare.server.notify.service import NotificationService
from gridshare.server.operator.run import operator_server
from gridshare.server.tls import PeerCertHttpProtocol, server_context
from gridshare.store.queries.operator import list_tokens

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


def run_worker(settings: Settings, reuse_port: bool, with_operator: bool = True) -> None:
    """One serving process: its own engine, cache and listening socket (and the operator API in one)."""
    ctx = build_context(settings, schema_log="debug")  # the parent has said what it did to the schema
    config = uvicorn.Config(
        create_asgi(ctx),
        http=PeerCertHttpProtocol,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=65,
        server_header=False,
    )
    config.load()
    if not settings.behind_proxy:
        files = tls_files(settings)
        config.ssl = server_context(files.cert_file, files.key_file, files.ca_file)
    server = uvicorn.Server(config)
    device_socket = _socket(settings.host, settings.port, reuse_port)
    operator_socket = _operator_socket(settings) if with_operator else None
    if operator_socket is None:
        server.run(sockets=[device_socket])
        return
    pairs = [
        (server, device_socket),
        (operator_server(ctx, settings.operator_host, settings.operator_port), operator_socket),
    ]
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve_together(pairs))


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


async def _serve_together(pairs: list[tuple[uvicorn.Server, socket.socket]]) -> None:
    """Run several uvicorn servers in one loop; when one stops (signal or failure), stop the others."""
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in pairs]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server, _sock in pairs:
        server.should_exit = True
    await asyncio.gather(*tasks)


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


def serve(settings: Settings, workers: int = 1) -> None:
    """Prepare the store once, start the envelope engine, then serve until interrupted."""
    ctx = build_context(settings)
    seed_baseline(ctx)
    pki = None
    if settings.behind_proxy:
        proxies = ", ".join(settings.trusted_proxies)
        door = f"http://{settings.host}:{settings.port}/dcap behind a TLS proxy ({proxies})"
    else:
        pki_existed = (settings.pki_dir / INDEX_FILE).is_file()
        files = tls_files(settings)
        if settings.dev_pki and not settings.tls_cert_file:
            pki = ensure_dev_pki(settings.pki_dir)
            register_dev_aggregators(ctx, pki)
            log.info("%s", describe_dev_pki(pki, created=not pki_existed))
        door = f"https://{settings.host}:{settings.port}/dcap (trust anchor {files.ca_file})"
    if settings.demo_network:
        seed_demo(ctx, pki)
    store = ctx.engine.url.render_as_string(hide_password=True)
    # The engine runs in this process: scheduled, and on operator changes (it watches the store).
    recomputer = Recomputer(ctx)
    recomputer.start()
    # Notifications to subscribers are noticed and delivered from this process too (durable outbox).
    notifications = NotificationService(ctx)
    notifications.start()
    log.info("CSIP-AUS endpoint on %s, %d worker(s), store %s", door, workers, store)
    log.info("operator API on http://%s:%d (docs at /docs)", settings.operator_host, settings.operator_port)
    log.info("%s", token_hint(ctx))
    if workers == 1:
        try:
            run_worker(settings, reuse_port=False)
        finally:
            notifications.stop()
            recomputer.stop()
        return
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(target=run_worker, args=(settings, True, i == 0), daemon=True) for i in range(workers)
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
