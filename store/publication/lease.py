"""Who may publish envelopes: a lock the database or the OS releases when its holder dies, plus fencing.

Why not a lease with an expiry: a lease long enough to ride out a slow recomputation keeps a restarted
server (or a standby) from publishing for that long after a crash, which is exactly when an outage
must get through. The databases already know when a holder dies:

* PostgreSQL: a session-level advisory lock taken on a connection of its own. The server drops it the
  moment that connection ends (a killed process closes its socket at once; a vanished host is noticed
  by TCP keepalives, set short on that connection).
* SQLite: an OS lock (`flock`) on a file next to the database, which the kernel drops when the process
  dies. `flock` locks belong to an open file, so two engines in one process exclude each other too.

A lock alone does not stop a publisher that has lost it without noticing (a partitioned host still
finishing a publication) from writing. So each new holder bumps an epoch in `publisher_lease`, and
every publishing transaction first runs `UPDATE publisher_lease ... WHERE epoch = <mine>` (`fence`):
inside that transaction it proves nobody took over since, and the row lock it takes orders it against
the next holder's bump. A stale publisher's transaction matches no row and publishes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import IO, Any, Protocol, cast

from sqlalchemy import Connection, CursorResult, Engine, create_engine, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from gridshare.store.db import transaction
from gridshare.store.models import PublisherLease

log = logging.getLogger("gridshare.publisher")

#: The advisory lock key (advisory locks are per database, so one constant serves every deployment).
ADVISORY_KEY = 0x6772_6964_7368_7231  # "gridshr1"
#: Seconds of silence after which the PostgreSQL server probes, and drops, the lock holder's connection.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 5, 2, 3


def holder_name() -> str:
    """Host, pid and a random suffix: what operators and the chaos benchmark see as the holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lock(Protocol):
    """A non-blocking exclusive lock that the system releases when its holder dies."""

    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class FileLock:
    """`flock` on `path`; held while the file stays open (the kernel drops it when the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None  # a file object: dropping it closes it, and the lock goes

    def try_acquire(self) -> bool:
        if self._file is not None:
            return self.still_held()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "ab")  # noqa: SIM115  (held open for as long as the lock is)
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.close()
            return False
        self._file = file
        if not self.still_held():  # the file was replaced between our open and our lock
            self.release()
            return False
        return True

    def still_held(self) -> bool:
        """Held, and the path still names the file we locked (a deleted lock file would admit another)."""
        if self._file is None:
            return False
        try:
            return os.fstat(self._file.fileno()).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def release(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()  # closing the only descriptor drops the flock


class AdvisoryLock:
    """`pg_try_advisory_lock` on a connection of its own (no pool: closing it really ends the session).

    A standby keeps its connection and asks again on it, rather than connecting every second.
    """

    def __init__(self, url: str, key: int = ADVISORY_KEY) -> None:
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={
                "keepalives": 1,
                "keepalives_idle": KEEPALIVE_IDLE_S,
                "keepalives_interval": KEEPALIVE_INTERVAL_S,
                "keepalives_count": KEEPALIVE_COUNT,
                "connect_timeout": 5,
            },
        )
        self._key = key
        self._conn: Connection | None = None
        self._held = False

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                # The server probes a silent peer after a few seconds: a vanished host lets go of the lock.
                conn.execute(text(f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE_S}"))
                conn.execute(text(f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_S}"))
                conn.execute(text(f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}"))
            except Exception:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def try_acquire(self) -> bool:
        if self._held:
            return self.still_held()
        try:
            conn = self._connection()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
        except Exception as exc:
            log.warning("publisher lock: could not ask the database for it (%s)", exc)
            self._drop()
            return False
        self._held = got
        return got

    def still_held(self) -> bool:
        """The session that took the lock is alive and still holds it."""
        if not self._held or self._conn is None:
            return False
        try:
            # A bigint key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits).
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND CAST(classid AS bigint) = :hi "
                    "AND CAST(objid AS bigint) = :lo AND objsubid = 1"
                ),
                {"hi": self._key >> 32, "lo": self._key & 0xFFFFFFFF},
            ).scalar()
        except Exception as exc:
            log.warning("publisher lock: the lock's connection failed (%s); the lock is lost", exc)
            self._drop()
            return False
        if not held:
            self._held = False
        return bool(held)

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.invalidate()  # close the session itself: its advisory locks go with it

    def release(self) -> None:
        """Unlock before closing: closing alone ends the session asynchronously (the backend exits a
        moment later), and a standby asking in that moment would be refused."""
        if self._held and self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        self._drop()

    def dispose(self) -> None:
        self.release()
        self._engine.dispose()


class ProcessLock:
    """For databases with no file to lock next to (SQLite in memory): one holder per process."""

    _locks: dict[str, threading.Lock] = {}
    _guard = threading.Lock()

    def __init__(self, key: str) -> None:
        with self._guard:
            self._lock = self._locks.setdefault(key, threading.Lock())
        self._held = False

    def try_acquire(self) -> bool:
        if not self._held:
            self._held = self._lock.acquire(blocking=False)
        return self._held

    def still_held(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


def lock_for(engine: Engine) -> Lock:
    """The right lock for this database: advisory (PostgreSQL), file (SQLite file), else per process."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock(url.render_as_string(hide_password=False))
    database = make_url(url).database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return FileLock(Path(database).resolve().with_name(Path(database).name + ".publisher.lock"))
    return ProcessLock(url.render_as_string(hide_password=False))


class Publisher:
    """This instance's right to publish: the lock, and the fencing epoch it was granted with."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session], name: str, now_s: Any) -> None:
        self.name = name[:128]
        self._sessions = sessions
        self._lock = lock_for(engine)
        self._now_s = now_s  # () -> int, the injectable clock
        self._mutex = threading.Lock()
        #: One publication at a time from this process: networks computed side by side take turns here
        #: rather than queueing on the database's write lock (SQLite's would time out under many).
        self.publishing = threading.Lock()
        self.epoch: int | None = None

    def ensure(self) -> bool:
        """Hold the lock (taking it if free) and know our epoch; False while another instance publishes.

        Returns quickly either way: this is called before every run and by the takeover ticker.
        """
        with self._mutex:
            if self.epoch is not None and self._lock.still_held():
                return True
            if self.epoch is not None:
                log.error(
                    "publisher %s lost its lock (epoch %d); it publishes nothing more", self.name, self.epoch
                )
                self.epoch = None
            if not self._lock.try_acquire():
                return False
            try:
                self.epoch = self._bump()
            except Exception as exc:
                log.warning("publisher lock taken but the epoch could not be written (%s); retrying", exc)
                return False
            log.warning("this instance (%s) is now the envelope publisher, epoch %d", self.name, self.epoch)
            return True

    def _bump(self) -> int:
        with transaction(self._sessions) as session:
            session.execute(
                update(PublisherLease)
                .where(PublisherLease.id == 1)
                .values(epoch=PublisherLease.epoch + 1, holder=self.name, acquired_s=self._now_s())
            )
            row = session.get(PublisherLease, 1, populate_existing=True)
            if row is None:
                raise RuntimeError("publisher_lease row 1 is missing (schema not upgraded?)")
            return int(row.epoch)

    def fence(self, session: Session) -> bool:
        """Inside a publishing transaction: True only if no other instance took over since our bump.

        The UPDATE's row lock holds until this transaction ends, so a new holder's bump waits for it:
        either this publication commits before the takeover, or it matches nothing and must abort.
        """
        epoch = self.epoch
        if epoch is None:
            return False
        result = cast(
            "CursorResult[Any]",
            session.execute(
                update(PublisherLease)
                .where(PublisherLease.id == 1, PublisherLease.epoch == epoch)
                .values(holder=self.name)
            ),
        )
        if result.rowcount == 1:
            return True
        log.error("publisher %s was fenced off: another instance holds a newer epoch", self.name)
        with self._mutex:
            self.epoch = None
            self._lock.release()
        return False

    def release(self) -> None:
        with self._mutex:
            self.epoch = None
            self._lock.release()
            if isinstance(self._lock, AdvisoryLock):
                self._lock.dispose()
