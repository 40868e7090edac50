"""The operator API's uvicorn server: plain HTTP on its own (loopback by default) address.

It runs in the same event loop and process as the device endpoint, sharing the AppContext, so a write
here invalidates that process's caches immediately; other workers notice through the counter.
"""

from __future__ import annotations

import ipaddress
import logging

import uvicorn

from gridshare.server.operator.app import create_operator_app
from gridshare.server.shared.context import AppContext

log = logging.getLogger(__name__)


def operator_server(ctx: AppContext, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        create_operator_app(ctx),
        host=host,
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    config.load()
    if not _is_loopback(host):
        log.warning(
            "operator API on %s is plain HTTP: bearer tokens cross the network unencrypted; "
            "put it behind a TLS proxy or keep it on loopback",
            host,
        )
    return uvicorn.Server(config)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
