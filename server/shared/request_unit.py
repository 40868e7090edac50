"""What every route shares: one unit of work with its scope, XML responses, and capped body reading.

A read route may also declare its answer cacheable (`Unit.cacheable`): the polling fast path
(server/shared/fastpath.py) then keeps the response it sent and answers the same request from the same
client from memory until something the body depends on changes or its validity window ends.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Path, Request
from fastapi.responses import Response
from lxml import etree
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gridshare.server.shared.context import AppContext
from gridshare.server.shared.identity import peer_pem, resolve_scope
from gridshare.server.shared.render_cache import Refresh
from gridshare.server.wire.xmlio import MEDIA_TYPE, WireError, parse_body, to_bytes
from gridshare.store.change_feed import (
    change_versions_for_cache,
    envelope_site_key,
    feed_of,
    network_key,
    site_key,
)
from gridshare.store.db import (
    bump_activity,
    bump_publication,
    not_waiting_for_writers,
    publication_value,
    write_lock_busy,
)
from gridshare.store.models import Site
from gridshare.store.queries.envelopes import envelope_network
from gridshare.store.queries.runtime_settings import poll_rate_overrides
from gridshare.store.queries.sites import get_site, visible_site_ids
from gridshare.store.scope import ClientScope

#: Database ids are 32-bit signed integers: a larger (or negative) id in a path names nothing, so it
#: answers 404 from path validation instead of reaching the driver (PostgreSQL refuses it with an error).
MAX_ID = 2**31 - 1
Id = Annotated[int, Path(ge=0, le=MAX_ID)]


#: The ASGI scope key under which a route leaves its `Cacheable` for the fast path.
CACHEABLE = "gridshare.cacheable"
#: ASGI scope key: this write committed nothing a cached body or a client's scope depends on (only a
#: device's report rows), so the fast path need not wait for its change feed to hear of the commit.
UNPUBLISHED = "gridshare.unpublished"
#: More change keys than this per body and the body is not cached (checking them would cost more).
MAX_DEPS = 64


@dataclass(frozen=True)
class Cacheable:
    """What the fast path needs to keep a response: whose it is and until when it stays true."""

    #: The scope it was rendered for; None: the same body for every client that passes the checks.
    client: ClientScope | None
    generation: int
    valid_from_s: float
    valid_until_s: float
    deps: tuple[str, ...]
    dep_versions: tuple[int, ...]
    refresh: Refresh | None


@dataclass
class Unit:
    """One request's view of the store: a session, the caller's scope and the publication generation."""

    ctx: AppContext
    session: Session
    scope: ClientScope
    generation: int
    asgi: MutableMapping[str, Any] | None = None
    deps: list[str] = field(default_factory=list)
    dep_versions: list[int] = field(default_factory=list)
    too_many_deps: bool = False
    #: A write unit: it may remember an access check, but its answer is never kept (it committed).
    writes: bool = False

    def now_s(self) -> int:
        return self.ctx.now_s()

    def depends_on(self, *keys: str) -> None:
        """Record change keys (besides `all`) the body depends on; call it *before* reading the data.

        Versions read first can only be older than the data read after them, so a write landing in
        between makes the entry look stale (a re-render), never makes a stale body look current.
        """
        new = [k for k in keys if k not in self.deps]
        if new:
            # A read unit (the only kind whose body is cached) teaches the feed these keys as it goes.
            feed = feed_of(self.ctx.engine) if self.asgi is not None else None
            found = change_versions_for_cache(self.session, new, feed)
            self.deps.extend(new)
            self.dep_versions.extend(found[k] for k in new)

    def depends_on_envelope(self, site_id: int) -> None:
        """Depend on this site's published envelope; call it before reading the controls.

        The site's envelope key first (a publication moving the site into or out of a network bumps
        it; the device's own reports do not), then the key of the network that publishes for it now:
        another network's publication leaves the body cached, one of its own network or a move
        re-renders it.
        """
        self.depends_on(envelope_site_key(site_id))
        network = envelope_network(self.session, site_id)
        if network is not None:
            self.depends_on(network_key(network))

    def depends_on_visible_sites(self) -> None:
        """Depend on every site this client sees (its MirrorUsagePoints, its DERs); call it first."""
        ids = visible_site_ids(self.session, self.scope, limit=MAX_DEPS + 1)
        if len(ids) > MAX_DEPS:
            self.too_many_deps = True  # an aggregator with a fleet: rendered per request, as before
        else:
            self.depends_on(*(site_key(i) for i in ids))

    def cacheable(
        self,
        *,
        valid_until_s: float = math.inf,
        valid_from_s: float = -math.inf,
        shared: bool = False,
        refresh: Refresh | None = None,
    ) -> None:
        """Let the fast path keep this response for this client, or for all (`shared`).

        Everything the body shows must be covered: the publication generation (always), the keys
        given to `depends_on`, and the clock window [valid_from_s, valid_until_s). A GET's response is
        kept if it is a 200. A write route calls it only once it knows the write changes nothing (a
        returning device re-registering, re-sending its NMI): that answer, whatever its status, is
        kept for the same request body (server/shared/fastpath.py, ANSWERED_WRITES).
        """
        if self.asgi is None or self.writes or self.too_many_deps or len(self.deps) > MAX_DEPS:
            return
        self.asgi[CACHEABLE] = Cacheable(
            None if shared else self.scope,
            self.generation,
            valid_from_s,
            valid_until_s,
            tuple(self.deps),
            tuple(self.dep_versions),
            refresh,
        )

    def remember(self, key: tuple[object, ...], value: object) -> None:
        """Keep an access check's outcome for this client (server/shared/check_cache.py) while the
        generation and the keys given to `depends_on` before it was read stay as they were."""
        if self.asgi is None or self.too_many_deps or len(self.deps) > MAX_DEPS:
            return
        self.ctx.checks.put(
            (*key, self.scope), self.generation, tuple(self.deps), tuple(self.dep_versions), value
        )

    def site(self, site_id: int) -> Site:
        site = get_site(self.session, self.scope, site_id)
        if site is None:
            raise HTTPException(404, "no such EndDevice")
        return site

    def poll_rate(self, resource: str) -> int:
        """The operator's run-time override if there is one, else the configured rate."""
        return _poll_rate_overrides(self).get(resource) or self.ctx.settings.poll_rates_s[resource]


#: Run-time poll-rate overrides per engine, read once per publication generation (every operator
#: change bumps it), so a poll costs a dict lookup. Weak keys: a disposed test engine takes its entry.
_RATE_CACHE: weakref.WeakKeyDictionary[Engine, tuple[int, dict[str, int]]] = weakref.WeakKeyDictionary()
_RATE_LOCK = threading.Lock()


def _poll_rate_overrides(u: Unit) -> dict[str, int]:
    with _RATE_LOCK:
        cached = _RATE_CACHE.get(u.ctx.engine)
    if cached is not None and cached[0] == u.generation:
        return cached[1]
    overrides = poll_rate_overrides(u.session)
    with _RATE_LOCK:
        _RATE_CACHE[u.ctx.engine] = (u.generation, overrides)
    return overrides


def context(request: Request) -> AppContext:
    return request.app.state.ctx


def _scope(ctx: AppContext, session: Session, request: Request, generation: int) -> ClientScope:
    pem = peer_pem(request.scope, ctx.settings)
    cached = ctx.scopes.get(pem, generation) if pem else None
    if cached is not None:
        return cached
    scope = resolve_scope(session, ctx.settings, pem)
    ctx.scopes.put(pem, generation, scope)  # type: ignore[arg-type]
    return scope


@contextmanager
def read_unit(request: Request) -> Iterator[Unit]:
    ctx = context(request)
    with ctx.sessions() as session:
        generation = _current_generation(ctx, session)
        u = Unit(ctx, session, _scope(ctx, session, request, generation), generation, request.scope)
        u.depends_on(u.scope.change_key())  # before anything is read (see `depends_on`)
        yield u


def _current_generation(ctx: AppContext, session: Session) -> int:
    """The publication counter, from the serving process's change feed when it has one.

    The feed answers from memory (PostgreSQL LISTEN/NOTIFY) or from one pragma (SQLite), where a
    SELECT per request cost 15 to 20 % of a device request (docs/bench-conversation.md). It is read
    before the handler reads anything, so what the handler renders is at least this new, the rule the
    render cache relies on (docs/change-feed.md). A write unit still reads it in its own transaction.
    """
    feed = feed_of(ctx.engine)
    return feed.generation() if feed is not None else publication_value(session)


def publishes_nothing(request: Request) -> None:
    """Declare that this request's write stored only report rows (telemetry, Responses) and touched no
    row a trigger turns into a change key (DERs, MirrorUsagePoints, MirrorMeterReadings: migration
    0010): its answer need not wait for the change feed (read-your-writes has nothing to catch)."""
    request.scope[UNPUBLISHED] = True


@contextmanager
def write_unit(request: Request, *, publishes: bool = True) -> Iterator[Unit]:
    """A transaction that commits only if the handler finishes; a failure leaves nothing behind.

    `publishes=False` is for a device's own reports (telemetry, Responses, LogEvents, DER documents):
    nothing any cached body or client scope depends on, so they bump the activity counter and leave
    every device's cached DERControlList valid. A device's registration and NMI binding do not
    publish either: they bump the change keys of the client that sees the site (`owner_key`) and
    `SITES`, which every body of that client depends on. Anything else touching sites,
    certificates, programs or controls must publish.
    """
    ctx = context(request)
    with ctx.sessions() as session, session.begin():
        generation = publication_value(session)
        scope = _scope(ctx, session, request, generation)
        u = Unit(ctx, session, scope, generation, request.scope, writes=True)
        u.depends_on(scope.change_key())
        yield u
        if publishes:
            bump_publication(session)
        else:
            bump_activity(session)


T = TypeVar("T")


async def store_work(request: Request, work: Callable[..., T], *args: Any) -> T:
    """`work(request, *args)` (a route's read or write unit) without ever making the event loop wait.

    The loop answers every device connection of the process, so nothing on it may wait for the store.
    On PostgreSQL (round trips) the work runs on a worker thread. On SQLite it runs here: a unit takes
    well under a millisecond, while on a busy loop a worker thread waits several for the interpreter
    lock at each statement (discovery answered a third fewer requests that way). But it may not wait for
    another writer's lock: if the file is locked (another process committing), the unit is rolled back
    and run again on a worker thread, which waits its turn.
    """
    if context(request).engine.dialect.name == "sqlite":
        try:
            with not_waiting_for_writers():
                return work(request, *args)
        except OperationalError as exc:
            if not write_lock_busy(exc):
                raise
    return await run_in_threadpool(work, request, *args)


def xml(body: etree._Element | bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    payload = body if isinstance(body, bytes) else to_bytes(body)
    return Response(payload, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def created(location: str) -> Response:
    return Response(status_code=201, headers={"Location": location})


def xml_content_type(content_type: str) -> bool:
    """Whether a request body of this Content-Type is read as 2030.5 XML (anything else is a 415)."""
    return content_type.split(";")[0].strip().lower() in (MEDIA_TYPE, "application/xml", "text/xml")


async def read_xml(request: Request, *expected: str) -> etree._Element:
    """Read at most `max_body_bytes` and parse it as one of `expected`; anything wrong is a 400."""
    settings = context(request).settings
    if not xml_content_type(request.headers.get("content-type", "")):
        raise HTTPException(415, f"send {MEDIA_TYPE}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise HTTPException(413, f"body larger than {settings.max_body_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise HTTPException(413, f"body larger than {settings.max_body_bytes} bytes")
        chunks.append(chunk)
    try:
        return parse_body(
            b"".join(chunks),
            expected=expected,
            max_bytes=settings.max_body_bytes,
            max_depth=settings.max_xml_depth,
        )
    except WireError as exc:
        raise HTTPException(400, str(exc)) from None
