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
from gridshare.server.connection_limits import ConnectionLimits
from gridshare.server.guarded_http import ConnectionGuard, GuardedHttpProtocol
from gridshare.server.tls_alerts import AlertingSSLProtocol

log = logging.getLogger("gridshare.server.connections")

#: File descriptors a serving process needs beyond its device connections (database pool, operator
#: API, notification deliveries, log files).
_SPARE_FDS = 256


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
    limits = ConnectionLimits.from_settings(settings)
    options: dict[str, Any] = {
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
        **uvicorn_options,
    }
    factory = DeviceProtocolFactory(limits, ssl_context)
    config = uvicorn.Config(app, http=cast(type[asyncio.Protocol], factory), **options)
    config.load()
    return config


def ensure_fd_budget(settings: Settings) -> None:
    """Raise the soft open-files limit to fit `max_connections`, or say loudly that it cannot."""
    needed = settings.max_connections + _SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open-files limit %d is below max_connections (%d) + %d: the process may run out of file "
            "descriptors before the connection cap refuses anyone; lower max_connections or raise "
            "`ulimit -n`",
            soft,
            settings.max_connections,
            _SPARE_FDS,
        )
