"""The device port's HTTP protocol: deadlines for every step of a request, and connection caps.

uvicorn's httptools protocol only times out an idle keep-alive connection. A client that sends half
a request line, headers and then nothing, or a Content-Length it never delivers, held its connection
(and the application task waiting for the body) forever. `GuardedHttpProtocol` adds, per connection:

* a header deadline: the request line and headers must arrive within `request_header_timeout_s` of
  the request's first byte (of the connection's start for its first request);
* a body deadline: the whole body within `request_body_timeout_s` of the headers;
* admission against `max_connections_per_client` (by certificate lFDI, else peer address) and
  `max_connections` (this process): an extra connection's first request is answered 503 with
  Retry-After and the connection closed, while other clients go on being served.

Deadlines are plain numbers checked by one sweep per listener (`ConnectionGuard`), so a request on
the hot path sets two floats and arms no timer. A request that times out gets 408 (where nothing was
answered yet) and its connection is closed; a client that hangs up mid-body is one INFO line instead
of uvicorn's "Exception in ASGI application" traceback for Starlette's ClientDisconnect.

It also answers a poll the moment its headers are parsed, when the application can answer it from
memory (its `answer_now`: the response cache in server/shared/fastpath.py). Most of what a device
asks is such a poll, and uvicorn's per-request machinery (a request cycle, an asyncio task, two ASGI
messages and their checks) cost more than finding the cached body. Only the plain case takes this
lane: an admitted connection, GET or HEAD over keep-alive HTTP/1.1 with nothing else in flight on it,
no body, no upgrade, no `Expect`, the peer reading; everything else goes through uvicorn as before.
The bytes written are the ones uvicorn would write for the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httptools
from starlette.requests import ClientDisconnect
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE
from uvicorn.server import ServerState

from gridshare.certs.identity import lfdi_from_der
from gridshare.server.connection_limits import ConnectionCounter, ConnectionLimits, client_key
from gridshare.server.tls import PeerCertHttpProtocol

log = logging.getLogger("gridshare.server.connections")

#: A refused client is asked to come back after this long (its other connections idle out by then).
RETRY_AFTER_S = 30
#: At most one WARNING per client key per this many seconds about refused connections.
REFUSAL_LOG_INTERVAL_S = 60.0

# Where a connection is in its current request.
_AWAITING = 0  # connected, no byte of a request yet (first request: header deadline runs)
_HEADERS = 1  # first byte seen, headers incomplete
_BODY = 2  # headers complete, body incomplete
_APP = 3  # request read; the application answers (no deadline) and keep-alive follows


class CachedAnswer(Protocol):
    """A complete answer kept in memory (server/shared/render_cache.py's CachedBody)."""

    status: int
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes


#: An application's `answer_now(scope)`: the answer to a GET/HEAD whose scope is complete but for a
#: body, already accounted for as answered; None if the application must be asked (nothing counted).
AnswerNow = Callable[[dict[str, Any]], CachedAnswer | None]


class ConnectionGuard:
    """Shared by every connection of one listener: limits, counts, and the deadline sweep."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.counter = ConnectionCounter(limits.max_connections_per_client, limits.max_connections)
        self._live: set[GuardedHttpProtocol] = set()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._last_refusal_log: dict[str, float] = {}

    def enter(self, conn: GuardedHttpProtocol, key: str) -> str | None:
        """Track a new connection; None if admitted, else why it is refused (then it is not counted)."""
        self._live.add(conn)
        if self._sweep_handle is None:
            self._sweep_handle = conn.loop.call_later(self.limits.sweep_interval_s, self._sweep, conn.loop)
        return self.counter.admit(key)

    def leave(self, conn: GuardedHttpProtocol, key: str | None) -> None:
        """Forget a closed connection (count it out if it was admitted)."""
        self._live.discard(conn)
        if key is not None:
            self.counter.release(key)

    def should_log_refusal(self, key: str, now: float) -> bool:
        """Rate-limit refusal warnings: a client hammering the cap must not flood the log."""
        last = self._last_refusal_log.get(key)
        if last is not None and now - last < REFUSAL_LOG_INTERVAL_S:
            return False
        if len(self._last_refusal_log) > 4096:
            self._last_refusal_log.clear()
        self._last_refusal_log[key] = now
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for conn in [c for c in self._live if c.deadline is not None and c.deadline <= now]:
            conn.deadline_passed()
        if self._live:
            self._sweep_handle = loop.call_later(self.limits.sweep_interval_s, self._sweep, loop)
        else:
            self._sweep_handle = None  # re-armed by the next connection


class GuardedHttpProtocol(PeerCertHttpProtocol):
    """PeerCertHttpProtocol with request deadlines, connection caps and quiet client hang-ups."""

    _refusal = ""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        guard: ConnectionGuard,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard
        self.timeout_keep_alive = guard.limits.keep_alive_timeout_s  # type: ignore[assignment]
        self.deadline: float | None = None
        self._phase = _AWAITING
        self._key: str | None = None  # set once admitted: the counter key to release
        self._who = "unknown peer"
        self._body_bytes = 0
        self._closed_by_us = False
        self._application = self.app
        self.app = self._run_app
        answer_now = getattr(self._application, "answer_now", None)
        # uvicorn's access log and concurrency limit live in its request cycle: with either, no lane
        logged = self.access_log and self.access_logger.isEnabledFor(logging.INFO)
        plain = not logged and self.limit_concurrency is None
        self._answer_now: AnswerNow | None = answer_now if callable(answer_now) and plain else None
        self._answered_now = False  # the request being parsed was answered by the lane

    # --- connection ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # transport: asyncio.Transport
        super().connection_made(transport)
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        lfdi = lfdi_from_der(der) if der else None
        host = self.client[0] if self.client else None
        self._who = f"{host}:{self.client[1]}" if self.client else "unknown peer"
        if lfdi:
            self._who += f" (lFDI {lfdi})"
        key = client_key(lfdi, host, self.guard.limits.trusted_proxies)
        self.deadline = self.loop.time() + self.guard.limits.request_header_timeout_s
        refusal = self.guard.enter(self, key)
        if refusal is None:
            self._key = key
            return
        self.app = self._refuse
        self._answer_now = None  # a refused connection gets its 503, never a cached body
        self._refusal = refusal
        if self.guard.should_log_refusal(key, self.loop.time()):
            note = "503; more from it not logged for a minute"
            log.warning("refusing a connection from %s: %s (%s)", self._who, refusal, note)

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        mid_body = self._phase == _BODY and cycle is not None and not cycle.response_complete
        if mid_body and not self._closed_by_us:
            log.info(
                "client %s hung up during %s %s after %s body bytes",
                self._who,
                self.scope.get("method", "?"),
                self.scope.get("path", "?"),
                self._body_progress(),
            )
        self.deadline = None
        self.guard.leave(self, self._key)
        self._key = None
        super().connection_lost(exc)

    # --- parser callbacks (the hot path: set numbers, arm nothing) -----------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEADERS
        if self.deadline is None:
            self.deadline = self.loop.time() + self.guard.limits.request_header_timeout_s

    def on_headers_complete(self) -> None:
        if self._answer_at_once():
            self._answered_now = True
            self._phase = _APP
            self.deadline = None
            return
        super().on_headers_complete()
        self._phase = _BODY
        self._body_bytes = 0
        self.deadline = self.loop.time() + self.guard.limits.request_body_timeout_s

    def on_body(self, body: bytes) -> None:
        if self._answered_now:
            return  # a GET that carried a body anyway: it was answered; the body means nothing
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._answered_now:
            self._answered_now = False
            self.on_response_complete()  # as uvicorn after a response: keep-alive timer, next in line
            return
        super().on_message_complete()
        self._phase = _APP
        self.deadline = None

    # --- the lane: a poll answered from memory --------------------------------------------------

    def _answer_at_once(self) -> bool:
        """Answer the request whose headers were just parsed, if it is plain and the app has it ready."""
        cycle, answer_now = self.cycle, self._answer_now
        if answer_now is None:
            return False
        if (cycle is not None and not cycle.response_complete) or self.flow.write_paused:
            return False  # pipelined behind an answer in progress, or the peer is not reading
        parser = self.parser
        method = parser.get_method()
        if method not in (b"GET", b"HEAD") or self.expect_100_continue:
            return False
        if parser.get_http_version() != "1.1" or not parser.should_keep_alive() or parser.should_upgrade():
            return False
        parsed = httptools.parse_url(self.url)
        raw_path: bytes = parsed.path
        if b"%" in raw_path:
            return False  # uvicorn's unquoting decides what this path is
        scope: Any = self.scope
        scope["method"] = method.decode("ascii")
        scope["path"] = self.root_path + raw_path.decode("ascii")
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed.query or b""
        answer = answer_now(scope)
        if answer is None:
            return False
        # What uvicorn's RequestResponseCycle.send writes for the same two messages.
        head = [STATUS_LINE[answer.status]]
        for name, value in (*self.server_state.default_headers, *answer.headers):
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        if method == b"GET":
            head.append(answer.body)
        self.transport.write(b"".join(head))
        return True

    # --- deadlines ---------------------------------------------------------------------------

    def deadline_passed(self) -> None:
        """Called by the sweep: answer 408 if nothing was answered yet, then close the connection."""
        self.deadline = None
        if self.transport.is_closing():
            return
        limits = self.guard.limits
        cycle = self.cycle if self._phase == _BODY else None
        if self._phase == _AWAITING:
            wait_s = limits.request_header_timeout_s
            log.info("closed a connection from %s: no request within %g s", self._who, wait_s)
            self._close()
            return
        if self._phase == _HEADERS:
            reason = f"request headers not complete within {limits.request_header_timeout_s:g} s"
            # a pipelined request behind an unfinished response: no 408 in the middle of that one
            answered = self.cycle is not None and not self.cycle.response_complete
        else:
            reason = (
                f"request body not complete within {limits.request_body_timeout_s:g} s "
                f"({self._body_progress()} bytes received)"
            )
            answered = cycle is not None and cycle.response_started
        log.info("closed a connection from %s: %s", self._who, reason)
        if not answered:
            self._write_plain(408, f"{reason}\n")
        if cycle is not None:
            # The application may be waiting for the body: let it see a disconnect, and drop anything
            # it still tries to send (our 408 is the answer).
            cycle.disconnected = True
            cycle.message_event.set()
        self._close()

    def _close(self) -> None:
        self._closed_by_us = True
        self.transport.close()

    def _body_progress(self) -> str:
        declared = next((v for k, v in self.headers or () if k == b"content-length"), None)
        return f"{self._body_bytes} of {declared.decode('latin-1')}" if declared else str(self._body_bytes)

    def _write_plain(self, status: int, text: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """A complete close-delimited response written straight to the transport."""
        body = text.encode()
        head = [f"HTTP/1.1 {status} {_PHRASES[status]}\r\n".encode()]
        for name, value in (*self.server_state.default_headers, *extra):
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: text/plain; charset=utf-8\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)

    # --- application -------------------------------------------------------------------------

    async def _run_app(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        # The client went away (or we closed it on a deadline) while the app read the body:
        # connection_lost / deadline_passed already logged one line about it, not a traceback.
        with contextlib.suppress(ClientDisconnect):
            await self._application(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """The answer on a connection over its client's (or the process's) cap."""
        self._closed_by_us = True
        body = f"too many connections: {self._refusal}; retry later\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(RETRY_AFTER_S).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


_PHRASES = {408: "Request Timeout", 503: "Service Unavailable"}
