"""How long a device-port connection may take over each step, and how many one client may hold.

Pure bookkeeping, no sockets: `ConnectionLimits` is the settings' view (seconds and counts), and
`ConnectionCounter` admits or refuses a new connection by client key against a per-client and a
process-wide cap. The protocol in `server/guarded_http.py` applies both.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from gridshare.core.settings import Settings

#: The key shared by connections whose client is not ours to count (a trusted TLS-terminating
#: proxy carries many devices): they count towards the process-wide cap only.
UNCOUNTED = ""
#: File descriptors a serving process keeps for other things than device connections (database
#: pool, operator API, notification deliveries, logs).
SPARE_FDS = 256


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Timeouts (seconds) and caps (connections) of the device port, from core/settings.py."""

    tls_handshake_timeout_s: float = 10.0
    request_header_timeout_s: float = 10.0
    request_body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 65.0
    max_connections_per_client: int = 100
    max_connections: int = 4096
    trusted_proxies: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, fd_limit: int | None = None) -> ConnectionLimits:
        """The settings' limits; an unset `max_connections` is what `fd_limit` open files allow."""
        total = settings.max_connections
        if total is None:
            total = max(1, (fd_limit if fd_limit is not None else 1024) - SPARE_FDS)
        return cls(
            tls_handshake_timeout_s=settings.tls_handshake_timeout_s,
            request_header_timeout_s=settings.request_header_timeout_s,
            request_body_timeout_s=settings.request_body_timeout_s,
            keep_alive_timeout_s=settings.keep_alive_timeout_s,
            max_connections_per_client=settings.max_connections_per_client,
            max_connections=total,
            trusted_proxies=tuple(settings.trusted_proxies) if settings.behind_proxy else (),
        )

    @property
    def sweep_interval_s(self) -> float:
        """How often deadlines are checked: a tenth of the shortest timeout, within [0.05, 1] s."""
        shortest = min(self.request_header_timeout_s, self.request_body_timeout_s)
        return min(1.0, max(0.05, shortest / 10))


def client_key(lfdi: str | None, peer_host: str | None, trusted_proxies: tuple[str, ...]) -> str:
    """Whom a connection is counted against: its certificate's lFDI, else its peer address."""
    if lfdi:
        return f"lfdi:{lfdi}"
    if peer_host is None:
        return "peer:unknown"
    if trusted_proxies and _in_networks(peer_host, trusted_proxies):
        return UNCOUNTED
    return f"peer:{peer_host}"


@lru_cache(maxsize=1024)
def _in_networks(host: str, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


class ConnectionCounter:
    """Open connections per client key and in all; `admit` says why a new one is refused, if it is."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._open = 0
        self._by_key: dict[str, int] = {}

    @property
    def open(self) -> int:
        return self._open

    def open_for(self, key: str) -> int:
        return self._by_key.get(key, 0)

    def admit(self, key: str) -> str | None:
        """Count the connection in and return None, or return the refusal reason (nothing counted)."""
        if self._open >= self.total:
            return f"the server is at its limit of {self.total} open connections"
        held = self._by_key.get(key, 0)
        if key != UNCOUNTED and held >= self.per_client:
            return f"this client already has {held} open connections (limit {self.per_client})"
        self._open += 1
        self._by_key[key] = held + 1
        return None

    def release(self, key: str) -> None:
        """Count an admitted connection out."""
        self._open -= 1
        left = self._by_key.get(key, 0) - 1
        if left > 0:
            self._by_key[key] = left
        else:
            self._by_key.pop(key, None)
