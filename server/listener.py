"""The uvicorn configuration of the device port: guarded HTTP, inside TLS that sends its alerts.

Every place that serves the 2030.5 endpoint (`gridshare serve`, the test fixture, the fleet
simulator) builds its uvicorn.Config here, so all of them get the same timeouts, caps and TLS.

TLS is done by the protocol factory, not by the event loop: uvicorn's `ssl=` would hand the socket to
the loop's own TLS protocol, which drops the fatal alert of a refused handshake (see
`server/tls_alerts.py`). So uvicorn is given a plain socket and `DeviceProtocolFactory` wraps each
connection's `GuardedHttpProtocol` in an `AlertingSSLProtocol`; behind a TLS-terminating proxy
(`behind_proxy`) the guarded protocol serves plain HTTP directly.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from typing import Any, cast

import uvicorn
from uvicorn.config import Config
from uvicorn.server import ServerState

from gridshare.core.settings import Settings
from gridshare.server.connection_limits import SPARE_FDS, ConnectionLimits
from gridshare.server.guarded_http import ConnectionGuard, GuardedHttpProtocol
from gridshare.server.tls_alerts import AlertingSSLProtocol

log = logging.getLogger("gridshare.server.connections")

#: No process needs more open files than this, whatever its hard limit allows.
_FD_CEILING = 1 << 20


class DeviceProtocolFactory:
    """What uvicorn calls per accepted connection (in place of a protocol class)."""

    def __init__(self, limits: ConnectionLimits, ssl_context: ssl.SSLContext | None) -> None:
        self.guard = ConnectionGuard(limits)
        self.ssl_context = ssl_context

    def __call__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.BaseProtocol:
        http = GuardedHttpProtocol(config, server_state, app_state, _loop, guard=self.guard)
        if self.ssl_context is None:
            return http
        # typeshed wants a waiter future and whole seconds; the protocol takes None and any float.
        timeouts: dict[str, Any] = {
            "ssl_handshake_timeout": self.guard.limits.tls_handshake_timeout_s,
            "ssl_shutdown_timeout": self.guard.limits.tls_handshake_timeout_s,
        }
        waiter: Any = None
        return AlertingSSLProtocol(http.loop, http, self.ssl_context, waiter, server_side=True, **timeouts)


def device_config(
    app: Any, settings: Settings, ssl_context: ssl.SSLContext | None, **uvicorn_options: Any
) -> uvicorn.Config:
    """A loaded uvicorn.Config serving `app` on the device port (TLS if `ssl_context` is given)."""
    limits = ConnectionLimits.from_settings(settings, open_files_limit(settings))
    options: dict[str, Any] = {
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
        # uvicorn would otherwise replace the peer address with X-Forwarded-For from loopback callers,
        # and the peer address decides whether a forwarded certificate is believed
        # (server/shared/identity.py).
        "proxy_headers": False,
        **uvicorn_options,
    }
    log.info(
        "device port limits: %d connections (%d per client); TLS handshake %g s, headers %g s, body %g s, "
        "idle keep-alive %g s",
        limits.max_connections,
        limits.max_connections_per_client,
        limits.tls_handshake_timeout_s,
        limits.request_header_timeout_s,
        limits.request_body_timeout_s,
        limits.keep_alive_timeout_s,
    )
    factory = DeviceProtocolFactory(limits, ssl_context)
    config = uvicorn.Config(app, http=cast(type[asyncio.Protocol], factory), **options)
    config.load()
    return config


def open_files_limit(settings: Settings) -> int:
    """Raise the soft open-files limit as far as the connection cap needs (or, with no cap set, to the
    hard limit) and return it; warn when a set cap cannot be met."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _FD_CEILING
    wanted = _FD_CEILING if settings.max_connections is None else settings.max_connections + SPARE_FDS
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if settings.max_connections is not None and soft < settings.max_connections + SPARE_FDS:
        log.warning(
            "open-files limit %d is below max_connections (%d) + %d: the process may run out of file "
            "descriptors before the connection cap refuses anyone; lower max_connections or raise "
            "`ulimit -n`",
            soft,
            settings.max_connections,
            SPARE_FDS,
        )
    return int(soft)
