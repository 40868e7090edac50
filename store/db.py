"""Engines, sessions and schema upgrades for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Table, Update, create_engine, event, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

import gridshare.store.access_models
import gridshare.store.console_models
import gridshare.store.runtime_settings  # noqa: F401  (so does the run-time settings table)
from gridshare.store.models import PublicationCounter, PublisherLease

log = logging.getLogger(__name__)

#: Rows of `publication_counter`: PUBLICATION changes with anything a cached body or a client's scope
#: depends on; ACTIVITY only with a device's own reports (telemetry, Responses, LogEvents, DER documents);
#: KEY_CHANGES (SQLite only, migration 0012's triggers) with every write of a `change_version` row.
PUBLICATION, ACTIVITY, KEY_CHANGES = 1, 2, 3

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: PostgreSQL advisory lock key held while one process upgrades the schema or seeds an empty store
#: (any fixed 64-bit number; this one spells "GRIDSHAR" in ASCII).
STARTUP_LOCK_KEY = 0x4752494453484152
#: Waiting longer than this for another process's start-up is logged (a migration can take a while).
_STARTUP_WAIT_NOTICE_S = 2.0


def make_engine(url: str) -> Engine:
    """Create an engine with the per-dialect settings the server relies on."""
    parsed = make_url(url)
    if parsed.drivername.startswith("postgresql") and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_S}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            # Foreign keys are off by default in SQLite; WAL lets readers run while a publish commits.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        event.listen(engine, "checkout", _busy_timeout_as_asked)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10, pool_recycle=_PG_RECYCLE_S)
    _ping_when_idle(engine)
    return engine


#: How long an SQLite statement waits for another writer's lock before it fails ("database is locked").
_SQLITE_BUSY_TIMEOUT_S = 30
_BUSY_MS = "gridshare.busy_timeout_ms"
_not_waiting = threading.local()


@contextmanager
def not_waiting_for_writers() -> Iterator[None]:
    """SQLite connections checked out in this block fail at once on a write lock another writer holds
    (`write_lock_busy` tells that error) instead of sleeping in SQLite's busy handler for up to
    `_SQLITE_BUSY_TIMEOUT_S`: for work on an event loop, which must not wait, and can hand the work to a
    thread that may. No effect on PostgreSQL."""
    before = getattr(_not_waiting, "on", False)
    _not_waiting.on = True
    try:
        yield
    finally:
        _not_waiting.on = before


def write_lock_busy(exc: OperationalError) -> bool:
    """Whether `exc` is SQLite's "another writer holds the lock" (SQLITE_BUSY and its extended codes)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return (
        isinstance(exc.orig, sqlite3.OperationalError)
        and code is not None
        and code & 0xFF == sqlite3.SQLITE_BUSY
    )


def _busy_timeout_as_asked(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry, _proxy: object) -> None:
    """Give a checked-out SQLite connection the busy timeout its thread asks for (changed only when it
    differs from what the connection has: a pragma costs a few microseconds)."""
    wanted_ms = 0 if getattr(_not_waiting, "on", False) else _SQLITE_BUSY_TIMEOUT_S * 1000
    if record.info.get(_BUSY_MS, _SQLITE_BUSY_TIMEOUT_S * 1000) != wanted_ms:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {wanted_ms}")
        cur.close()
        record.info[_BUSY_MS] = wanted_ms


#: A pooled PostgreSQL connection unused for longer than this is pinged when checked out again; one
#: in steady use is not (pinging every checkout, SQLAlchemy's `pool_pre_ping`, cost a round trip per
#: request). A connection that died while in use fails its statement and SQLAlchemy then invalidates
#: it and every older pooled connection, so the next checkout connects afresh.
_PG_PING_IDLE_S = 10.0
#: Connections older than this are replaced at checkout (server-side idle timeouts, memory growth).
_PG_RECYCLE_S = 1800


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _mark_idle(_dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["idle_since_s"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry, _proxy: object) -> None:
        idle_since_s = record.info.get("idle_since_s")
        if idle_since_s is None or time.monotonic() - idle_since_s < _PG_PING_IDLE_S:
            return
        try:
            cur = dbapi_conn.cursor()
            cur.execute("SELECT 1")
            cur.close()
            dbapi_conn.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out another (SQLAlchemy retries 3 times).
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@dataclass(frozen=True)
class SchemaChange:
    """What `upgrade` did: from which revision (None: an empty database) to which."""

    before: str | None
    after: str | None

    def describe(self) -> str:
        if self.before is None:
            return f"created the database schema (revision {self.after})"
        if self.before != self.after:
            return f"upgraded the database schema from revision {self.before} to {self.after}"
        return f"database schema is current (revision {self.after})"


def schema_revision(engine: Engine) -> str | None:
    """The store's Alembic revision, or None when the database holds no GridShare schema yet."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def store_exists(url: str) -> bool:
    """Whether the database at `url` already holds a GridShare store, creating nothing to find out.

    A SQLite file that does not exist is not opened at all (opening it would create it).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return False
        if not Path(str(parsed.database)).is_file():
            return False
    engine = make_engine(url)
    try:
        return inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()


@contextmanager
def startup_lock(engine: Engine) -> Iterator[None]:
    """Only one process at a time upgrades the schema or seeds the store, however many start at once.

    Several servers starting together on one fresh database would otherwise each run the migrations
    (all but one crash on duplicate tables) or each seed their own baseline. PostgreSQL: a session
    advisory lock; an SQLite file: an exclusive `flock` on a file beside it; in-memory: nothing to share.
    """
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            key = {"k": STARTUP_LOCK_KEY}
            _wait_for(lambda: bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), key).scalar()))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), key)
        return
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        with open(f"{url.database}.startup-lock", "a") as handle:
            _wait_for(lambda: _try_flock(handle.fileno()))
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    yield


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for(take: Callable[[], bool]) -> None:
    """Retry `take` until it succeeds; say so once if another process's start-up keeps us waiting."""
    started = time.monotonic()
    told = False
    while not take():
        if not told and time.monotonic() - started > _STARTUP_WAIT_NOTICE_S:
            log.info("waiting for another GridShare process to finish its start-up on this database")
            told = True
        time.sleep(0.05)


def upgrade(engine: Engine, log_level: int = logging.INFO) -> SchemaChange:
    """Bring the schema to the newest migration; safe to call on every start, from any number of processes.

    Logs what it did (created, upgraded from revision N to M, or current) at `log_level`.
    """
    with startup_lock(engine):
        change = _upgrade(engine)
    log.log(log_level, "%s in %s", change.describe(), engine.url.render_as_string(hide_password=True))
    return change


def _upgrade(engine: Engine) -> SchemaChange:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with Session(engine) as session, session.begin():
        for counter in (PUBLICATION, ACTIVITY, KEY_CHANGES):
            if session.get(PublicationCounter, counter) is None:
                session.add(PublicationCounter(id=counter, value=0))
        if session.get(PublisherLease, 1) is None:
            session.add(PublisherLease(id=1, holder="", epoch=0, acquired_s=0))
    return SchemaChange(before, schema_revision(engine))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back everything on any error."""
    with factory() as session, session.begin():
        yield session


def bump_publication(session: Session) -> None:
    """Mark client-visible state as changed; render caches compare this counter on every request."""
    _bump(session, PUBLICATION)


def publication_value(session: Session) -> int:
    return _value(session, PUBLICATION)


def bump_activity(session: Session) -> None:
    """Mark a device's own report as stored (telemetry, Response, LogEvent, DER document).

    Kept apart from the publication counter so that a fleet posting telemetry every minute does not
    invalidate every cached DERControlList and every resolved client scope; the notifier watches both.
    """
    _bump(session, ACTIVITY)


def activity_bump() -> Update:
    """`bump_activity`'s statement, for a writer that runs it in SQL of its own (bulk_insert.InsertBatch)."""
    return _BUMPS[ACTIVITY]


def activity_value(session: Session) -> int:
    return _value(session, ACTIVITY)


_COUNTERS = cast(Table, PublicationCounter.__table__)
#: One Core UPDATE per counter, built once: the ORM's bulk-update path would also look for the row in
#: the session, and building the statement costs more than running it; paid once per report batch.
_BUMPS = {
    counter: update(_COUNTERS).where(_COUNTERS.c.id == counter).values(value=_COUNTERS.c.value + 1)
    for counter in (PUBLICATION, ACTIVITY, KEY_CHANGES)
}


def _bump(session: Session, counter: int) -> None:
    session.connection().execute(_BUMPS[counter])  # Core: no ORM work for a one-row UPDATE


#: Read on the session's connection (Core, not the ORM's execute), from statements built once: every
#: write unit reads the publication counter, and an ORM select built per call cost 89 µs against 16.
_VALUES = {
    counter: select(_COUNTERS.c.value).where(_COUNTERS.c.id == counter)
    for counter in (PUBLICATION, ACTIVITY, KEY_CHANGES)
}


def _value(session: Session, counter: int) -> int:
    return int(session.connection().execute(_VALUES[counter]).scalar_one())
