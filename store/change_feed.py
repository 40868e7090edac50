"""What has changed, per change key, known in memory so a cached answer needs no query to stay correct.

A change key names what a change concerns: "all" (the publication counter, bumped by anything any
cached body or client scope depends on), "net:<name>" (one network's envelopes) or "site:<id>"
(one site). A cached body records the versions of the keys it depends on; it is served only while
the feed reports the same versions.

PostgreSQL: one dedicated connection per serving process LISTENs on `gridshare_changes`; triggers
(migration 0009) NOTIFY "<key> <version>" in the writer's transaction, which PostgreSQL delivers only
after commit, so the feed never runs ahead of visible data. If the listener connection drops or goes
quiet for longer than `stale_after_s`, the feed is *unsure* and every check reads the versions from
the database, as before the feed existed, until it has reconnected, LISTENed again and re-read the
publication counter (in that order, so no commit falls between). Every other key is read the first
time it is asked for and kept, up to `max_keys` of them, least recently asked evicted; a reconnect
forgets them all (notifications may have been missed). An envelope is a safety limit: serving one
that was withdrawn is never acceptable, so doubt costs queries, never correctness.

SQLite (embedded, single host): no NOTIFY. Each serving thread keeps its own connection and asks
`PRAGMA data_version`, which changes whenever another connection committed to the file (SQLite
documents this for exactly this purpose), and re-reads the versions only then. The pragma reads the
WAL index in shared memory (no table page); mtime is not used because its resolution and WAL
checkpoints make it unreliable. An in-memory database is private to one engine, so it is read directly.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gridshare.store.models import ChangeVersion

log = logging.getLogger(__name__)

CHANNEL = "gridshare_changes"
#: `application_name` of the listening connections, to find them in `pg_stat_activity`.
LISTENER_APPLICATION_NAME = "gridshare-change-feed"
#: The key of the global publication counter (`publication_counter` row 1).
ALL = "all"
_PUBLICATION_ROW = 1
#: publication_counter row counting change-key writes on SQLite (migration 0012).
_KEY_CHANGES_ROW = 3

_T = TypeVar("_T")
Keys = tuple[str, ...]
Versions = tuple[int, ...]


def network_key(name: str) -> str:
    """The change key of one network (its envelopes, ratings, fallback): one per zone substation."""
    return f"net:{name}"


def envelope_site_key(site_id: int) -> str:
    """The change key of which network publishes one site's envelope: bumped only when a publication
    takes the site into or out of a network's set, not by the device's own reports (`site_key` is)."""
    return f"env:{site_id}"


#: Bumped with every envelope publication of any network, for whoever watches all of them (the
#: subscription notifier); device caches depend on their own network's key instead.
ENVELOPES = "envelopes"


def site_key(site_id: int) -> str:
    """The change key of one site (its controls, its binding to a network node)."""
    return f"site:{site_id}"


def owner_key(lfdi: str, aggregator_id: int | None) -> str:
    """The change key of the one client that sees a site: its aggregator, or else the device itself
    (store.scope.ClientScope.site_filter). Every body a client is served depends on it, so a device
    registering or binding its NMI re-renders its own client's bodies and leaves every other
    client's cached."""
    return f"agg:{aggregator_id}" if aggregator_id is not None else f"dev:{lfdi.upper()}"


#: Bumped when a device registers or binds an NMI (with its owner's key), for whoever watches every
#: client's sites (the subscription notifier); device caches depend on their owner key instead.
SITES = "sites"


def bump_change(session: Session, key: str) -> None:
    """Mark `key` as changed, in the caller's transaction (PostgreSQL notifies when it commits).

    For changes that concern one network or one site only; anything wider uses `bump_publication`.
    Only cache entries that list `key` in their `deps` see it: a writer may move from
    `bump_publication` to this only once every body and scope its change affects declares the key
    (and whatever else watches the publication counter, such as the subscription notifier, watches it).
    """
    bump_changes(session, [key])


def bump_changes(session: Session, keys: Iterable[str]) -> None:
    """`bump_change` for several keys, in one statement per thousand (a publication's moved sites)."""
    rows = [{"key": k, "version": 1} for k in dict.fromkeys(keys)]
    for key in rows:
        if key["key"] == ALL or " " in str(key["key"]):
            raise ValueError(f"not a per-key change key: {key['key']!r}")
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(ChangeVersion)
    stmt = stmt.on_conflict_do_update(
        index_elements=[ChangeVersion.key], set_={"version": ChangeVersion.version + 1}
    )
    for i in range(0, len(rows), 1000):
        session.execute(stmt, rows[i : i + 1000])


def change_versions(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """The stored versions of `keys` (0 for a key never bumped); "all" is the publication counter."""
    return _read(session.connection(), tuple(keys))


def change_versions_for_cache(session: Session, keys: Iterable[str], feed: object) -> dict[str, int]:
    """`change_versions`, also teaching a PostgreSQL `feed` the keys it did not know (no extra query).

    A render reads the versions of what its body depends on anyway; the serving process's first
    cached poll of that body then finds them in memory. Only from a READ COMMITTED (or autocommit)
    connection, where the read sees every commit made before it began: an older snapshot could hand
    the feed a version a notification it already dropped has passed.
    """
    wanted = tuple(dict.fromkeys(keys))
    if isinstance(feed, PgChangeFeed) and _reads_latest(session.connection()):

        def read(ks: Keys) -> Versions:
            found = change_versions(session, ks)  # one query for them all
            return tuple(found[k] for k in ks)

        versions = feed.learn(wanted, read)
        return dict(zip(wanted, versions, strict=True))
    return change_versions(session, wanted)


def _reads_latest(conn: Connection) -> bool:
    """Does each statement on `conn` see every commit made before it began? (No query: what the
    connection was opened with, or the server's default read once per pool.)"""
    level = conn.get_execution_options().get("isolation_level") or conn.default_isolation_level
    return str(level).upper().replace("_", " ") in ("READ COMMITTED", "AUTOCOMMIT")


_TABLE = ChangeVersion.__tablename__


def _read(conn: Connection, keys: Keys) -> dict[str, int]:
    found: dict[str, int] = {}
    if ALL in keys:
        found[ALL] = int(
            conn.exec_driver_sql(
                f"SELECT value FROM publication_counter WHERE id = {_PUBLICATION_ROW}"
            ).scalar_one()
        )
    others = [k for k in keys if k != ALL]
    if others:
        # Driver-level SQL: every first render reads its keys here, and an ORM select cost about
        # nine times as much (117 µs against 13 µs on SQLite, bench-conversation.md "First renders").
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        rows = conn.exec_driver_sql(
            f'SELECT "key", version FROM {_TABLE} WHERE "key" IN ({", ".join([mark] * len(others))})',
            tuple(others),
        )
        found.update({str(k): int(v) for k, v in rows})
    return {k: found.get(k, 0) for k in keys}


class ChangeFeed(Protocol):
    """Current versions of change keys, correct for this instant (from memory whenever it can)."""

    def current(self, keys: Keys) -> Versions: ...

    def generation(self) -> int: ...

    def sync(self) -> bool:
        """Return once every commit made before the call is reflected (False: not sure; read instead)."""
        ...

    def close(self) -> None: ...


class _DirectReads:
    """Versions read from the database on every call, on one autocommit connection per thread.

    Goes through SQLAlchemy (not a raw cursor) so engine events see every read the feed falls back to.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._local.conn = conn
        return conn

    def _on(self, work: Callable[[Connection], _T]) -> _T:
        """`work` on this thread's connection, once more on a fresh one if the first has failed."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                return work(conn)
            except Exception:
                self._local.conn = None
                conn.invalidate()
                conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def current(self, keys: Keys) -> Versions:
        found = self._on(lambda conn: _read(conn, keys))
        return tuple(found[k] for k in keys)

    def generation(self) -> int:
        return self.current((ALL,))[0]

    def notify(self, payload: str) -> None:
        """Send `payload` on the change channel (PostgreSQL), committed at once (autocommit)."""
        notify = text("SELECT pg_notify(:channel, :payload)")
        self._on(lambda conn: conn.execute(notify, {"channel": CHANNEL, "payload": payload}))

    def sync(self) -> bool:
        return True  # every call reads: nothing to wait for

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class SqliteChangeFeed:
    """Versions re-read only when `PRAGMA data_version` says another connection committed.

    Most commits are device reports, which bump no change key: each thread also remembers the count of
    change-key writes (`publication_counter` row 3, kept by migration 0012's triggers) and, when only
    the data version moved, re-reads the publication counter and that count in one statement, keeping
    every key version it knows if the count is unchanged.

    The pragma itself is asked at most every `recheck_s` per thread (it was a fifth of a fleet
    report's cost when asked twice per request): another process's commit is seen within that bound,
    as PostgreSQL's are within a notification's delivery, while this process's own writes are seen at
    once, because each of them calls `sync()` before it is answered, which makes every thread ask again.
    """

    def __init__(self, engine: Engine, recheck_s: float = 0.002) -> None:
        self._path = str(engine.url.database)
        self._local = threading.local()
        self._recheck_s = recheck_s
        #: Bumped by `sync()`: a thread whose last check saw an older epoch asks the pragma again.
        self._epoch = 0
        self._epoch_lock = threading.Lock()

    def _state(self) -> tuple[sqlite3.Connection, dict[str, int]]:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, check_same_thread=False, timeout=30, isolation_level=None)
            local.conn = conn
            local.seen = None
            local.key_changes = None
            local.versions = {}
            local.checked_at = -math.inf
            local.checked_epoch = -1
        now = time.monotonic()
        epoch = self._epoch
        if epoch == local.checked_epoch and now - local.checked_at < self._recheck_s:
            return conn, local.versions
        local.checked_at, local.checked_epoch = now, epoch
        seen = conn.execute("PRAGMA data_version").fetchone()[0]
        if seen != local.seen:
            local.seen = seen
            rows = dict(
                conn.execute(
                    "SELECT id, value FROM publication_counter WHERE id IN (?, ?)",
                    (_PUBLICATION_ROW, _KEY_CHANGES_ROW),
                ).fetchall()
            )
            key_changes = rows.get(_KEY_CHANGES_ROW)
            # One statement, one snapshot: a key written after it moves the count again for the next check.
            if key_changes is None or key_changes != local.key_changes:
                local.versions = {}
            local.key_changes = key_changes
            if _PUBLICATION_ROW in rows:
                local.versions[ALL] = int(rows[_PUBLICATION_ROW])
            else:
                local.versions.pop(ALL, None)
        return conn, local.versions

    def current(self, keys: Keys) -> Versions:
        conn, known = self._state()
        missing = [k for k in keys if k not in known]
        if missing:
            # Read inside one read transaction so every key comes from the same snapshot; a commit
            # landing after the pragma changes data_version again and the next check re-reads.
            conn.execute("BEGIN")
            try:
                if ALL in missing:
                    row = conn.execute(
                        f"SELECT value FROM publication_counter WHERE id = {_PUBLICATION_ROW}"
                    ).fetchone()
                    if row is None:
                        raise RuntimeError("publication_counter has no row 1: is the database migrated?")
                    known[ALL] = int(row[0])
                others = [k for k in missing if k != ALL]
                if others:
                    marks = ",".join("?" * len(others))
                    rows = conn.execute(
                        f"SELECT key, version FROM change_version WHERE key IN ({marks})", others
                    )
                    found = {str(k): int(v) for k, v in rows}
                    for k in others:
                        known[k] = found.get(k, 0)
            finally:
                conn.execute("COMMIT")
        return tuple(known[k] for k in keys)

    def generation(self) -> int:
        return self.current((ALL,))[0]

    def sync(self) -> bool:
        """After a commit in this process: every thread checks `data_version` on its next call."""
        with self._epoch_lock:
            self._epoch += 1
        return True

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class PgChangeFeed:
    """LISTEN on a dedicated connection; fall back to reads whenever the listener is in doubt.

    Only the publication counter is read on (re)connect; any other key is read the first time it is
    asked for (`current`, or `learn` from a render's own read) and then kept current by notifications.
    A notification for a key nobody asked for is dropped: whoever asks later reads the store, which
    already holds that commit. Memory is bounded by `max_keys` (least recently asked evicted).
    """

    def __init__(
        self,
        engine: Engine,
        heartbeat_s: float = 1.0,
        stale_after_s: float = 3.0,
        max_keys: int = 200_000,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._url = engine.url
        self._heartbeat_s = heartbeat_s
        self._stale_after_s = stale_after_s
        self._max_keys = max_keys
        self._fallback = _DirectReads(engine)
        self._lock = threading.Lock()
        self._all = 0  # the publication counter: read on every (re)connect, never evicted
        #: Keys asked for since the listener (re)connected, least recently asked first.
        self._versions: OrderedDict[str, int] = OrderedDict()
        #: Keys being read right now: [readers, highest version notified since they registered].
        self._pending: dict[str, list[int]] = {}
        self._epoch = 0  # one per connection of the listener: reads begun on an older one are not kept
        self._confirmed_at = -math.inf  # monotonic time the listener last proved alive; -inf: unsure
        self._stop = threading.Event()
        self._listener_pid: int | None = None
        self.reconnects = 0
        #: Keys read from the store because they were not known (for tests and operators).
        self.keys_loaded = 0
        # sync(): tokens this feed sent through the channel and the last one the listener heard back.
        self._sync_key = f"sync:{os.getpid()}:{id(self)}"
        self._sync_sent = 0
        self._sync_heard = 0
        self._sync_heard_changed = threading.Condition(self._lock)
        #: Wait before the first reconnection attempt (doubling up to 2 s while attempts fail).
        self.retry_after_s = 0.05
        self._thread = threading.Thread(target=self._run, name="gridshare-change-feed", daemon=True)
        self._thread.start()

    # -- what serving threads call ---------------------------------------------------------------
    def healthy(self) -> bool:
        return time.monotonic() - self._confirmed_at < self._stale_after_s

    def current(self, keys: Keys) -> Versions:
        with self._lock:
            if self.healthy():
                try:
                    return self._known(keys)
                except KeyError:  # asked for the first time since (re)connecting, or evicted
                    missing: Keys | None = self._missing(keys)
            else:
                missing = None
        # One query for what is not known, on this thread's own connection, holding no lock meanwhile.
        if missing is not None and self._load(missing, self._fallback.current) is not None:
            with self._lock:
                if self.healthy() and not self._missing(keys):
                    return self._known(keys)
        # In doubt, reconnected during the load, or evicted at once (a tiny max_keys): read them all.
        return self._read_store(keys)

    def generation(self) -> int:
        with self._lock:
            if self.healthy():
                return self._all
        return self._read_store((ALL,))[0]

    def _read_store(self, keys: Keys) -> Versions:
        """The versions as stored now; what is kept is raised to them, so no later answer is older."""
        versions = self._fallback.current(keys)
        with self._lock:
            for k, v in zip(keys, versions, strict=True):
                self._raise(k, v)
        return versions

    def learn(self, keys: Keys, read: Callable[[Keys], Versions]) -> Versions:
        """The versions of `keys` for a render in a READ COMMITTED transaction, keeping those this
        feed did not know, so that the first cached poll of the body needs no query.

        Known keys are answered from memory, with no round trip: a version heard of has been
        committed, so the data the render reads next (each statement sees every commit before it
        began) is at least that new, and a version not heard of yet can only be older, which makes the
        body look stale sooner, never a stale body current. Otherwise (a key not known, or the
        listener in doubt) what `read(keys)` returns.
        """
        with self._lock:
            if self.healthy():
                try:
                    return self._known(keys)
                except KeyError:
                    missing = self._missing(keys)
            else:
                missing = ()
        if not missing:
            return read(keys)
        found: dict[str, int] = {}

        def read_all(_missing: Keys) -> Versions:
            versions = read(keys)
            found.update(zip(keys, versions, strict=True))
            return tuple(found[k] for k in _missing)

        self._load(missing, read_all)
        return tuple(found[k] for k in keys)

    def _missing(self, keys: Keys) -> Keys:
        """The keys (not "all") this feed does not know; the lock is held."""
        versions = self._versions
        return tuple(dict.fromkeys(k for k in keys if k != ALL and k not in versions))

    def _known(self, keys: Keys) -> Versions:
        """The versions of `keys`, marking them recently asked (KeyError: one is not known); the lock
        is held."""
        versions = self._versions
        found = []
        for k in keys:
            if k == ALL:
                found.append(self._all)
            else:
                found.append(versions[k])
                versions.move_to_end(k)
        return tuple(found)

    def _load(self, keys: Keys, read: Callable[[Keys], Versions]) -> dict[str, int] | None:
        """Read `keys` from the store and keep them; None if the listener reconnected meanwhile.

        The keys are registered as pending *before* the read, and `_apply` records every notification
        for a pending key. A commit notified before registration is visible to the read (it began
        later); one notified after it is recorded; the version kept is the highest of the two (and of
        anything another thread kept meanwhile), since versions only grow.
        """
        with self._lock:
            epoch = self._epoch
            for k in keys:
                self._pending.setdefault(k, [0, -1])[0] += 1
        try:
            read_versions = read(keys)
        except BaseException:
            with self._lock:
                self._unregister(epoch, keys)
            raise
        with self._lock:
            notified = self._unregister(epoch, keys)
            if notified is None:
                return None  # notifications may have been missed since the read began: keep nothing
            kept: dict[str, int] = {}
            for k, v in zip(keys, read_versions, strict=True):
                kept[k] = self._versions[k] = max(v, notified[k], self._versions.get(k, -1))
                self._versions.move_to_end(k)
                # A reader of this key that began earlier must not keep less, should this one be
                # evicted before it finishes: versions handed out never go backwards.
                self._raise(k, kept[k])
            self.keys_loaded += len(keys)
            while len(self._versions) > self._max_keys:
                self._versions.popitem(last=False)
        return kept

    def _raise(self, key: str, version: int) -> None:
        """`key` is at `version` at least (committed, so never ahead of the truth); the lock is held.

        Raises what is kept and what a pending read will keep; stores nothing new (memory stays bounded).
        """
        if key == ALL:
            self._all = max(self._all, version)
            return
        known = self._versions.get(key)
        if known is not None and version > known:
            self._versions[key] = version  # an update, not a use: its LRU place stays
        pending = self._pending.get(key)
        if pending is not None and version > pending[1]:
            pending[1] = version

    def _unregister(self, epoch: int, keys: Keys) -> dict[str, int] | None:
        """End one reader's registration of `keys`: the highest versions notified meanwhile, or None
        if the listener has reconnected since (its registrations are gone); the lock is held."""
        if epoch != self._epoch:
            return None
        notified: dict[str, int] = {}
        for k in keys:
            entry = self._pending[k]
            notified[k] = entry[1]
            entry[0] -= 1
            if entry[0] == 0:
                del self._pending[k]
        return notified

    def sync(self) -> bool:
        """Wait until the listener has applied every commit made before this call.

        A writer's NOTIFY reaches the listener a moment after its commit; a client that writes and
        reads back at once could otherwise be answered from the moment before. PostgreSQL delivers
        notifications in commit order, so once a token sent now comes back, every earlier commit's
        notification has been applied. False (listener in doubt or too slow): callers must not trust
        the cache for this answer.
        """
        if not self.healthy():
            return True  # current() reads the database itself until the listener is back
        with self._lock:
            self._sync_sent += 1
            token = self._sync_sent
        try:
            self._fallback.notify(f"{self._sync_key} {token}")
        except Exception:
            return False
        deadline = time.monotonic() + self._stale_after_s
        with self._sync_heard_changed:
            while self._sync_heard < token:
                left = deadline - time.monotonic()
                if not self.healthy():
                    return True  # in doubt: current() reads the database until the listener is back
                if left <= 0:
                    return False
                self._sync_heard_changed.wait(left)
        return True

    def keys_known(self) -> int:
        """How many keys (besides "all") this feed holds in memory: at most `max_keys`."""
        with self._lock:
            return len(self._versions)

    def listener_pid(self) -> int | None:
        """The listening backend's pid (for operators and the outage tests)."""
        return self._listener_pid

    def close(self) -> None:
        self._stop.set()  # the listener sees it within one heartbeat; nothing here waits for that
        self._unsure()
        self._fallback.close()

    # -- the listener thread ---------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            connected = self.reconnects
            try:
                self._listen()
            except Exception as exc:  # any failure: doubt first, then reconnect
                self._unsure()
                if not self._stop.is_set():
                    log.warning("change feed lost its PostgreSQL listener (%s); reading per request", exc)
            failures = 0 if self.reconnects != connected else failures + 1
            # Retry soon after a working connection broke; back off (to 2 s) while the server is away.
            self._stop.wait(max(self.retry_after_s, min(self.retry_after_s * 2**failures, 2.0)))
        self._unsure()

    def _unsure(self) -> None:
        with self._lock:
            self._confirmed_at = -math.inf
            self._sync_heard_changed.notify_all()
        self._listener_pid = None

    def _listen(self) -> None:
        import psycopg

        args: dict[str, Any] = self._url.translate_connect_args(username="user", database="dbname")
        args.update({k: v for k, v in self._url.query.items() if isinstance(v, str)})
        timeout_s = max(1, int(self._stale_after_s))
        with psycopg.connect(
            **args,
            autocommit=True,
            application_name=LISTENER_APPLICATION_NAME,
            connect_timeout=timeout_s,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=int(self._stale_after_s * 1000),
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            # LISTEN is in force before any read: a commit after a read is notified, one before it is
            # read. Only the counter now; any other key when first asked for, on a connection of its own.
            published = int(_one(conn.execute("SELECT value FROM publication_counter WHERE id = 1")))
            with self._lock:
                # Forget every key: notifications may have been missed while disconnected.
                self._epoch += 1
                self._all = published
                self._versions = OrderedDict()
                self._pending = {}
                self._confirmed_at = time.monotonic()
            self._listener_pid = conn.info.backend_pid
            if self.reconnects:
                log.info("change feed listening again; cached answers resume")
            self.reconnects += 1
            while not self._stop.is_set():
                for note in conn.notifies(timeout=self._heartbeat_s):
                    self._apply(note.payload)
                conn.execute("SELECT 1")  # the heartbeat: proves the connection alive
                with self._lock:
                    self._confirmed_at = time.monotonic()

    def _apply(self, payload: str) -> None:
        key, _, raw = payload.rpartition(" ")
        if not key or not raw.isdigit():
            log.warning("ignored a malformed change notification %r", payload)
            return
        version = int(raw)
        with self._lock:
            self._confirmed_at = time.monotonic()
            if key.startswith("sync:"):  # a sync() token, ours or another process's: no version
                if key == self._sync_key and version > self._sync_heard:
                    self._sync_heard = version
                    self._sync_heard_changed.notify_all()
                return
            # Never backwards (a late duplicate, or a read that saw this commit already). A key that
            # is neither kept nor being read is dropped: whoever asks for it later reads this commit.
            self._raise(key, version)


def _one(cursor: Any) -> Any:
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("publication_counter has no row 1: is the database migrated?")
    return row[0]


#: The feed opened for each engine, so code that holds only the engine (routes) can find it.
_FEEDS: weakref.WeakKeyDictionary[Engine, ChangeFeed] = weakref.WeakKeyDictionary()


def open_change_feed(engine: Engine) -> ChangeFeed | None:
    """The feed for this engine's database (LISTEN/NOTIFY or data_version); None if it has none.

    An in-memory SQLite database lives in one connection the engine's pool hands back to each thread:
    a second connection would see another database, so its callers keep reading the counter directly.
    """
    url = engine.url
    feed: ChangeFeed
    if url.get_backend_name() == "postgresql":
        feed = PgChangeFeed(engine)
    elif url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        feed = SqliteChangeFeed(engine)
    else:
        return None
    _FEEDS[engine] = feed

    @event.listens_for(engine, "engine_disposed")
    def _close(_engine: Engine) -> None:
        # The process is done with this database (tests, shutdown): stop listening to it too.
        feed.close()

    return feed


def wait_until_heard(engine: Engine) -> None:
    """After a commit: return once this process's feed has heard of it (PostgreSQL's NOTIFY arrives a
    moment after the commit), so a reader in this process right after the writer's answer sees it."""
    feed = feed_of(engine)
    if feed is not None:
        feed.sync()


def feed_of(engine: Engine) -> ChangeFeed | None:
    """The feed a serving process opened on `engine`, if any."""
    return _FEEDS.get(engine)
