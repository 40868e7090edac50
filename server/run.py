"""Run the mTLS endpoint with uvicorn: one process, or several sharing the port through SO_REUSEPORT.

uvicorn's own worker mode shares one accepting socket, and with long keep-alive connections a burst
can land on a single worker (design notes §3b); separate SO_REUSEPORT sockets let the kernel spread
connections across processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys

import uvicorn

from certs.devpki import ensure_dev_pki
from gridshare.settings import Settings
from server.app import create_asgi
from server.bootstrap import build_context, register_dev_aggregators, seed_baseline, tls_files
from server.tls import PeerCertHttpProtocol, server_context

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


def run_worker(settings: Settings, reuse_port: bool) -> None:
    """One serving process: its own engine, cache and listening socket."""
    ctx = build_context(settings)
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
    server.run(sockets=[_socket(settings.host, settings.port, reuse_port)])


def serve(settings: Settings, workers: int = 1) -> None:
    """Prepare the store once, then serve until interrupted."""
    ctx = build_context(settings)
    seed_baseline(ctx)
    if settings.behind_proxy:
        proxies = ", ".join(settings.trusted_proxies)
        door = f"http://{settings.host}:{settings.port}/dcap behind a TLS proxy ({proxies})"
    else:
        files = tls_files(settings)
        if settings.dev_pki and not settings.tls_cert_file:
            register_dev_aggregators(ctx, ensure_dev_pki(settings.pki_dir))
        door = f"https://{settings.host}:{settings.port}/dcap (trust anchor {files.ca_file})"
    store = ctx.engine.url.render_as_string(hide_password=True)
    ctx.engine.dispose()
    log.info("CSIP-AUS endpoint on %s, %d worker(s), store %s", door, workers, store)
    if workers == 1:
        run_worker(settings, reuse_port=False)
        return
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=run_worker, args=(settings, True), daemon=True) for _ in range(workers)]
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
