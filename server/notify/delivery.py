"""Delivery: POST due outbox rows to their notificationURI, retry with exponential backoff, give up loudly.

Rows are claimed in the store before sending, so a restart (or a second server on the same database)
picks up what was pending and nothing is sent twice at once. Sends run on a small thread pool with
timeouts, so a slow or dead subscriber costs at most one timeout per attempt and delays nobody else.
A subscriber whose notification fails `notification_max_attempts` times is marked failed and logged;
it still gets one attempt per later notification, and the first success clears the mark.

Every attempt resolves the subscriber's host afresh, refuses inside addresses (`egress`), and connects
to exactly the address it checked: the URL's host still goes in the Host header and in TLS (SNI and
certificate verification against the system trust store), but no second lookup can swap the address
in between. Redirects are never followed (a 3xx is a failed attempt), and no proxy from the
environment is used.
"""

from __future__ import annotations

import http.client
import logging
import math
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from gridshare.server.shared.context import AppContext
from gridshare.server.subscriptions import egress
from gridshare.store.db import transaction
from gridshare.store.queries import subscriptions as q

log = logging.getLogger("gridshare.notify")

#: Rows claimed per round; the next round starts as soon as this one is recorded.
BATCH = 50
#: Delivered and abandoned rows are kept this long for operators to inspect, then pruned.
KEEP_DONE_S = 7 * 86400
_PRUNE_EVERY_S = 3600


def backoff_s(failures: int, base_s: int, max_s: int) -> int:
    """Delay before the next attempt after `failures` failed ones: base, 2 base, 4 base, ... up to max."""
    return int(min(base_s * 2 ** max(failures - 1, 0), max_s))


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to the URL's host name, over a TCP connection to an address chosen (and checked) before."""

    def __init__(self, dest: egress.Destination, timeout_s: float, tls: ssl.SSLContext | None) -> None:
        super().__init__(dest.host, dest.port, timeout=timeout_s)
        self._dest, self._tls = dest, tls

    def connect(self) -> None:
        sock = socket.create_connection((str(self._dest.address), self._dest.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = (
            sock if self._tls is None else self._tls.wrap_socket(sock, server_hostname=self._dest.host)
        )


class Delivery:
    def __init__(self, ctx: AppContext, workers: int = 4) -> None:
        self.ctx = ctx
        timeout_s = ctx.settings.notification_timeout_s
        self._tls = ssl.create_default_context()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gridshare-notify")
        #: A claim outlives one attempt (connect + write + read + pool timeouts), then the row is due again.
        self._claim_s = math.ceil(4 * timeout_s) + 1
        self._prune_at_s = 0

    def deliver_due(self) -> int:
        """Send what is due now; returns how many were delivered."""
        settings = self.ctx.settings
        now_s = self.ctx.now_s()
        with transaction(self.ctx.sessions) as session:
            due = q.due_notifications(session, now_s, BATCH)
            claimed = [d for d in due if q.claim(session, d, now_s + self._claim_s)]
        errors = list(self._pool.map(self._post, claimed))
        delivered = 0
        for d, error in zip(claimed, errors, strict=True):
            with transaction(self.ctx.sessions) as session:
                done_s = self.ctx.now_s()
                if error is None:
                    q.record_delivered(session, d, done_s)
                    delivered += 1
                    continue
                failures = d.attempts + 1
                give_up = failures >= settings.notification_max_attempts
                retry_at_s = (
                    None
                    if give_up
                    else done_s
                    + backoff_s(
                        failures, settings.notification_retry_base_s, settings.notification_retry_max_s
                    )
                )
                newly_failed = q.record_failed(session, d, error, done_s, retry_at_s)
            if newly_failed:
                log.warning(
                    "subscription %d marked failed: %d attempts to %s failed, last: %s",
                    d.subscription_id,
                    failures,
                    d.notification_uri,
                    error,
                )
            elif give_up:
                log.info("notification %d to %s dropped: %s", d.id, d.notification_uri, error)
            else:
                log.info(
                    "notification %d to %s failed (%s); attempt %d at +%d s",
                    d.id,
                    d.notification_uri,
                    error,
                    failures + 1,
                    (retry_at_s or done_s) - done_s,
                )
        if now_s >= self._prune_at_s:
            with transaction(self.ctx.sessions) as session:
                q.prune_outbox(session, now_s - KEEP_DONE_S)
            self._prune_at_s = now_s + _PRUNE_EVERY_S
        return delivered

    def _post(self, due: q.Due) -> str | None:
        """One attempt; None on a 2xx answer, else a short reason. The answer's body is never read."""
        settings = self.ctx.settings
        try:
            dest = egress.resolve(due.notification_uri, settings)
        except egress.EgressRefused as exc:
            return f"refused: {exc}"[:255]
        parts = urlsplit(due.notification_uri)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = _PinnedConnection(
            dest, settings.notification_timeout_s, self._tls if dest.scheme == "https" else None
        )
        try:
            body = due.body.encode()
            conn.request(
                "POST",
                target,
                body=body,
                headers={"Content-Type": due.content_type, "User-Agent": "GridShare notifications"},
            )
            status = conn.getresponse().status
        except Exception as exc:  # any failure of one subscriber is that subscriber's problem
            return f"{type(exc).__name__}: {exc}".strip()[:255]
        finally:
            conn.close()
        return None if 200 <= status < 300 else f"HTTP {status}"

    def close(self) -> None:
        self._pool.shutdown(wait=True)
