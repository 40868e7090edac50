"""A raw-ASGI front for the device conversation: cached responses without the framework.

Devices poll their resources far more often than those change. Each read route the devices use in
their normal cycle declares its response cacheable (`Unit.cacheable`, server/shared/request_unit.py):
which client it is for, the change keys and clock window it is true for. This front keeps such
responses, keyed by (URI template, path parameters, paging s/l/a, client scope), and answers GET and
HEAD from them while they are current; anything else (a miss, a write, another resource, a refused
client) goes to the FastAPI application unchanged. The same checks apply on both paths: peer
certificate -> scope for the current generation -> cache key; a client whose scope is not resolved
for the current generation (new, changed, revoked) always reaches the application. A cached
DERControlList whose controls changed status since it was rendered is re-spliced in memory (see
server/shared/render_cache.py), so block boundaries are answered here too, without the database.

Two kinds of device writes are answered here too, with their body read first (and replayed to the
application if it must answer): a write its route found changes nothing (a returning device
registering again, re-sending its NMI: ANSWERED_WRITES, keyed by a digest of the body as well), and a
routine report checked against a remembered access check (server/shared/fast_reports.py).

Every request is also counted here, whichever path answers it: per-resource requests and latency
(server/shared/metrics.py) and the EndDevice's last contact (server/shared/contacts.py), both in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, event

from gridshare.server.shared import fast_reports
from gridshare.server.shared.context import AppContext
from gridshare.server.shared.identity import peer_pem
from gridshare.server.shared.metrics import PROCESS
from gridshare.server.shared.render_cache import CachedBody
from gridshare.server.shared.request_unit import CACHEABLE, UNPUBLISHED, Cacheable, xml_content_type
from gridshare.server.shared.resources import Classifier
from gridshare.server.wire import hrefs
from gridshare.store.change_feed import (
    ChangeFeed,
    Keys,
    PgChangeFeed,
    SqliteChangeFeed,
    Versions,
    change_versions,
    open_change_feed,
)
from gridshare.store.db import PUBLICATION
from gridshare.store.group_commit import GROUP_COMMIT
from gridshare.store.scope import ClientScope

#: The resources served from the response cache (once their route has declared a response cacheable).
CACHED: dict[str, hrefs.Href] = {
    h.resource: h
    for h in (
        hrefs.DCAP_T,
        hrefs.TIME_T,
        hrefs.EDEV_LIST_T,
        hrefs.EDEV_T,
        hrefs.REGISTRATION_T,
        hrefs.CONNECTION_POINT_T,
        hrefs.FSA_LIST_T,
        hrefs.FSA_T,
        hrefs.DERP_LIST_T,
        hrefs.DERP_T,
        hrefs.DERC_LIST_T,
        hrefs.DERC_T,
        hrefs.ACTIVE_DERC_LIST_T,
        hrefs.DEFAULT_DERC_T,
        hrefs.CURVE_LIST_T,
        hrefs.CURVE_T,
        hrefs.DER_LIST_T,
        hrefs.DER_T,
        hrefs.MUP_LIST_T,
        hrefs.MUP_T,
    )
}
CACHED.update({name: hrefs.DER_DOC_T for name in hrefs.DER_DOCS.values()})

#: Writes a returning device repeats that usually change nothing (registering again: 409 + Location;
#: re-sending its NMI: 204): once the route has found one changes nothing it declares its answer
#: cacheable, and the same body from the same client is answered again from memory until a
#: publication (by method and resource).
ANSWERED_WRITES: dict[tuple[str, str], hrefs.Href] = {
    ("POST", hrefs.EDEV_LIST_T.resource): hrefs.EDEV_LIST_T,
    ("PUT", hrefs.CONNECTION_POINT_T.resource): hrefs.CONNECTION_POINT_T,
    ("POST", hrefs.CONNECTION_POINT_T.resource): hrefs.CONNECTION_POINT_T,
}


class GenerationReader:
    """Reads the publication counter on one long-lived autocommit connection per thread (cheap).

    Only the publication row (id 1): device reports bump the activity row, which no cached body
    depends on.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()

    def read(self) -> int:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.raw_connection()
            if self._engine.dialect.name == "postgresql":
                conn.driver_connection.autocommit = True  # type: ignore[union-attr]
            self._local.conn = conn
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT value FROM publication_counter WHERE id = {PUBLICATION}")
            row = cur.fetchone()
            if row is None:
                raise RuntimeError(f"publication_counter has no row {PUBLICATION}: is the database migrated?")
            return int(row[0])
        finally:
            cur.close()


def _query(raw: bytes) -> tuple[int, int, int | None] | None:
    """(s, l, a) for the cache key, exactly as the paging dependency would read them; None if unusual."""
    start, limit, after = 0, None, None
    if raw:
        for part in raw.split(b"&"):
            name, _, value = part.partition(b"=")
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                return None
            if name == b"s":
                start = int(value)
            elif name == b"l":
                limit = int(value)
            elif name == b"a":
                after = int(value)
            else:
                return None
    return start, limit if limit is not None else 1, after


class FastPath:
    def __init__(self, app: Any, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx
        self.generations = GenerationReader(ctx.engine)
        # The change feed answers "has anything changed?" from memory (LISTEN/NOTIFY on PostgreSQL).
        self.changes: ChangeFeed | None = open_change_feed(ctx.engine) if ctx.settings.change_feed else None
        if isinstance(self.changes, SqliteChangeFeed):
            # Whatever this process commits (a route, a test, the report writer) is seen by every
            # serving thread on its next request, not up to the feed's recheck interval later.
            # A batch of device reports changes nothing published (its rows are shown by no cached body):
            # it does not make every thread ask again.
            feed = self.changes
            event.listen(
                ctx.sessions,
                "after_commit",
                lambda session: None if session.info.get(GROUP_COMMIT) else feed.sync(),
            )
        self.classify = Classifier()
        self.metrics = PROCESS
        self.reports = fast_reports.FastReports(ctx)
        # Read-your-writes: writes answered by this process, and how many of them the feed has caught
        # up with (ChangeFeed.sync). A write's answer is sent only once the feed has heard of it, so a
        # client that writes and then reads back is never answered with the body from before.
        self._writes = 0
        self._synced_writes = 0
        self._sync_pending: tuple[int, asyncio.Future[bool]] | None = None
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="gridshare-feed-sync")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        method = scope["method"]
        resource, site_id = self.classify(scope["path"])
        request_key: tuple[object, ...] | None = None
        if method in ("GET", "HEAD") and resource in CACHED:
            request_key = _request_key(scope, CACHED[resource], self.ctx.settings.list_limit_cap)
        elif (method, resource) in ANSWERED_WRITES or (
            method == "POST" and resource in fast_reports.RESOURCES
        ):
            body = await _small_body(scope, receive, self.ctx.settings.max_body_bytes)
            if body is None and _has_small_body(scope, self.ctx.settings.max_body_bytes):
                return  # the client went away while sending its body
            if body is not None:
                receive = _replaying(body, receive)
                if (method, resource) in ANSWERED_WRITES:
                    request_key = _write_key(scope, ANSWERED_WRITES[method, resource], body)
                else:
                    answer = await self._report(scope, resource, body)
                    if answer is not None:
                        await self._send(send, *answer, head=False)
                        self._done(resource, site_id, answer[0], t0)
                        return
        if request_key is not None:
            hit = self._cached(scope, request_key)
            if hit is not None:
                await self._send(send, hit.status, hit.headers, hit.body, head=method == "HEAD")
                self.metrics.cache_result(resource, hit=True)
                self._done(resource, site_id, hit.status, t0)
                return
            self.metrics.cache_result(resource, hit=False)
        status = [500]
        sent: list[Any] = []

        writes = method not in ("GET", "HEAD")

        async def send_noting_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                # Committed: answer once the feed has heard it. A write the route found changes
                # nothing (it declared its answer cacheable) or that stored only report rows
                # (UNPUBLISHED) committed nothing to wait for.
                if writes and message["status"] < 400 and not (CACHEABLE in scope or UNPUBLISHED in scope):
                    self._writes += 1
                    await self._caught_up(self._writes)
            if request_key is not None:
                sent.append(message)
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._done(resource, site_id, status[0], t0)
        if request_key is not None and (status[0] == 200 or writes):
            self._keep(scope, request_key, sent)

    def answer_now(self, scope: dict[str, Any]) -> CachedBody | None:
        """A GET or HEAD answered from the cache as soon as its headers are parsed, without an ASGI cycle
        (server/guarded_http.py): the same checks and accounting as a hit in `__call__`. None: ask
        `__call__` (nothing was counted; it looks again and counts the miss)."""
        t0 = time.perf_counter()
        resource, site_id = self.classify(scope["path"])
        href = CACHED.get(resource)
        if href is None:
            return None
        request_key = _request_key(scope, href, self.ctx.settings.list_limit_cap)
        hit = None if request_key is None else self._cached(scope, request_key)
        if hit is None:
            return None
        self.metrics.cache_result(resource, hit=True)
        self._done(resource, site_id, hit.status, t0)
        return hit

    @staticmethod
    async def _send(send: Any, status: int, headers: Any, body: bytes, *, head: bool) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"" if head else body})

    def _client(self, scope: dict[str, Any]) -> tuple[ClientScope, int] | None:
        """The client's scope and the generation it was resolved at, if resolved at the current one."""
        pem = peer_pem(scope, self.ctx.settings)
        if pem is None:
            return None
        changes = self.changes
        generation = changes.generation() if changes is not None else self.generations.read()
        client = self.ctx.scopes.get(pem, generation)
        return None if client is None else (client, generation)

    async def _report(self, scope: dict[str, Any], resource: str, body: bytes) -> fast_reports.Answer | None:
        found = self._client(scope)
        if found is None:  # not resolved at this generation: new, changed or revoked; ask the app
            return None
        client, generation = found
        return await self.reports.answer(resource, scope["path"], client, generation, self._versions, body)

    async def _caught_up(self, target: int) -> bool:
        """True once the change feed reflects the first `target` writes this process answered.

        Only a feed that hears of commits asynchronously (PostgreSQL's NOTIFY) can lag; the round trip
        runs on one thread of its own (never queued behind route handlers), and every write answered
        while one is in flight waits for the next one, which covers them all.
        """
        if self.changes is not None and not isinstance(self.changes, PgChangeFeed):
            return self.changes.sync()  # SQLite: no round trip, every thread just checks again
        if self._synced_writes >= target or self.changes is None:
            return True
        while True:
            pending = self._sync_pending
            if pending is None:
                covers = self._writes
                future = asyncio.get_running_loop().run_in_executor(self._sync_thread, self.changes.sync)
                self._sync_pending = pending = (covers, future)
            covers, future = pending
            ok = await future
            if self._sync_pending is pending:
                self._sync_pending = None
                if ok:
                    self._synced_writes = max(self._synced_writes, covers)
            if covers >= target:
                return bool(ok)

    def _done(self, resource: str, site_id: int | None, status: int, t0: float) -> None:
        self.metrics.observe(resource, status, time.perf_counter() - t0)
        if site_id is not None and status < 400:
            self.ctx.contacts.record(site_id, resource, self.ctx.clock.now(), resource == "DERControlList")

    def _versions(self, keys: Keys) -> Versions:
        if self.changes is not None:
            return self.changes.current(keys)
        with self.ctx.sessions() as session:  # no feed (in-memory database, feed off): read them
            found = change_versions(session, keys)
        return tuple(found[k] for k in keys)

    def _cached(self, scope: dict[str, Any], request_key: tuple[object, ...]) -> CachedBody | None:
        """The cached answer, if this client may be sent a current one for this request."""
        found = self._client(scope)
        if found is None:  # not resolved at this generation: new, changed or revoked; ask the app
            return None
        client, generation = found
        now_s = self.ctx.clock.now()
        cache = self.ctx.cache
        entry = cache.lookup((*request_key, client), generation, now_s, self._versions)
        if entry is None:  # a body every admitted client shares (Time)
            entry = cache.lookup((*request_key, None), generation, now_s, self._versions)
        return entry

    def _keep(self, scope: dict[str, Any], request_key: tuple[object, ...], sent: list[Any]) -> None:
        """Cache the response the application just sent, if its route declared it cacheable."""
        marker = scope.get(CACHEABLE)
        if not isinstance(marker, Cacheable) or not sent or sent[0]["type"] != "http.response.start":
            return
        body = b"".join(m.get("body", b"") for m in sent[1:] if m["type"] == "http.response.body")
        # lower-case names, as uvicorn writes them (the protocol's lane writes these bytes as they are)
        headers = tuple((bytes(k).lower(), bytes(v)) for k, v in sent[0]["headers"])
        status = sent[0]["status"]
        no_body = status == 204 and not body  # a 204 carries no Content-Length (RFC 9110 §8.6)
        if not (no_body or (b"content-length", str(len(body)).encode()) in headers) or any(
            m.get("more_body") for m in sent[1:]
        ):
            return  # not one complete body (a HEAD answered without one): nothing to replay
        self.ctx.cache.put(
            (*request_key, marker.client),
            marker.generation,
            marker.valid_until_s,
            body,
            marker.refresh,
            marker.deps,
            marker.dep_versions,
            valid_from_s=marker.valid_from_s,
            headers=headers,
            status=status,
        )


def _request_key(scope: dict[str, Any], href: hrefs.Href, list_limit_cap: int) -> tuple[object, ...] | None:
    """(template, path parameters, s, l, a) naming what was asked, or None if not cacheable as asked."""
    params = href.match(scope["path"])
    paging = _query(scope.get("query_string", b""))
    if params is None or paging is None:
        return None
    start, limit, after = paging
    return (href.path, *params.values(), start, min(limit, list_limit_cap), after)


def _write_key(scope: dict[str, Any], href: hrefs.Href, body: bytes) -> tuple[object, ...] | None:
    """(method, template, path parameters, body digest): a write answered again only to the same body."""
    params = href.match(scope["path"])
    if params is None or scope.get("query_string"):
        return None
    return (scope["method"], href.path, *params.values(), hashlib.blake2b(body, digest_size=20).digest())


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


def _has_small_body(scope: dict[str, Any], max_bytes: int) -> bool:
    """A Content-Length within the limit and a 2030.5 XML type: what the front reads itself."""
    length = _header(scope, b"content-length")
    content_type = _header(scope, b"content-type")
    return (
        length is not None
        and length.isdigit()
        and 0 < int(length) <= max_bytes
        and content_type is not None
        and xml_content_type(content_type.decode("latin-1"))
    )


async def _small_body(scope: dict[str, Any], receive: Any, max_bytes: int) -> bytes | None:
    """The whole body of a small XML request; None (nothing read) for anything the app must judge.

    Also None if the client disconnected while sending (then `_has_small_body` is true).
    """
    if not _has_small_body(scope, max_bytes):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None  # more than it declared: the connection is not worth answering
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Any) -> Any:
    """A `receive` that gives the application the body the front already read, then the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict[str, Any]:
        if pending:
            return pending.pop()
        return dict(await receive())

    return replay
