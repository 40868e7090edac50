"""A raw-ASGI front for the polling hot path: cached DERControlList bodies without the framework.

Devices poll their DERControlList far more often than it changes. When the render cache holds a
current body for this client, generation and status time, it is sent straight from here; anything
else (a miss, another resource, a refused client) goes to the FastAPI application unchanged. The
same checks apply on both paths: peer certificate -> scope for the current generation -> cache key.
A cached list whose controls changed status since it was rendered is re-spliced in memory (see
server/shared/render_cache.py), so block boundaries are answered here too, without the database.

Every request is also counted here, whichever path answers it: per-resource requests and latency
(server/shared/metrics.py) and the EndDevice's last contact (server/shared/contacts.py), both in memory.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine

from gridshare.server.shared.context import AppContext
from gridshare.server.shared.identity import peer_pem
from gridshare.server.shared.metrics import PROCESS
from gridshare.server.shared.resources import Classifier
from gridshare.server.wire import hrefs
from gridshare.server.wire.xmlio import MEDIA_TYPE
from gridshare.store.change_feed import ChangeFeed, open_change_feed
from gridshare.store.db import PUBLICATION

_HEADERS = [(b"content-type", MEDIA_TYPE.encode())]


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
        self.classify = Classifier()
        self.metrics = PROCESS

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        resource, site_id = self.classify(scope["path"])
        if resource == "DERControlList" and scope["method"] in ("GET", "HEAD"):
            body = self._cached(scope)
            if body is not None:
                headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
                self.metrics.cache["hit"] += 1
                self._done(resource, site_id, 200, t0)
                return
            self.metrics.cache["miss"] += 1
        status = [500]

        async def send_noting_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._done(resource, site_id, status[0], t0)

    def _done(self, resource: str, site_id: int | None, status: int, t0: float) -> None:
        self.metrics.observe(resource, status, time.perf_counter() - t0)
        if site_id is not None and status < 400:
            self.ctx.contacts.record(site_id, resource, self.ctx.clock.now(), resource == "DERControlList")

    def _cached(self, scope: dict[str, Any]) -> bytes | None:
        match = hrefs.DERC_LIST_T.match(scope["path"])
        if match is None:
            return None
        paging = _query(scope.get("query_string", b""))
        if paging is None:
            return None
        pem = peer_pem(scope, self.ctx.settings)
        if pem is None:
            return None
        changes = self.changes
        generation = changes.generation() if changes is not None else self.generations.read()
        client = self.ctx.scopes.get(pem, generation)
        if client is None:
            return None
        start, limit, after = paging
        limit = min(limit, self.ctx.settings.list_limit_cap)
        key = ("derc", client.lfdi, int(match["site_id"]), int(match["program_id"]), start, limit, after)
        versions = changes.current if changes is not None else None
        return self.ctx.cache.get(key, generation, self.ctx.clock.now(), versions)
