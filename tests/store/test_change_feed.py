"""Serving processes learn about publications from the change feed, not from a query per poll.

Two servers on one PostgreSQL stand for two serving processes: a publication through one reaches the
other's cached DERControlList promptly; while the other's listener is cut off it never answers from
memory, and it recovers by itself. Per-key versions let a change on one network leave another
network's cached bodies valid, on PostgreSQL (NOTIFY) and SQLite (data_version) alike.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from gridshare.certs.devpki import DevPki
from gridshare.server.shared.render_cache import RenderCache
from gridshare.store.change_feed import (
    ALL,
    LISTENER_APPLICATION_NAME,
    PgChangeFeed,
    SqliteChangeFeed,
    bump_change,
    change_versions_for_cache,
    feed_of,
    network_key,
    open_change_feed,
    site_key,
)
from gridshare.store.db import (
    bump_activity,
    bump_publication,
    make_engine,
    session_factory,
    transaction,
    upgrade,
)
from tests.support.engine import add_control, listing
from tests.support.servers import T0, RunningServer, fresh_pg_database, running_server


def _eventually(check: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        time.sleep(0.02)


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def _two_servers(pki: DevPki, tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    with fresh_pg_database() as url, ExitStack() as stack:
        a = stack.enter_context(running_server(pki, url, tmp_path / "a"))
        b = stack.enter_context(running_server(pki, url, tmp_path / "b"))
        yield a, b


def _feed(server: RunningServer) -> PgChangeFeed:
    feed = feed_of(server.ctx.engine)
    assert isinstance(feed, PgChangeFeed)
    _eventually(feed.healthy, "the change feed is listening")
    return feed


def _limits(server: RunningServer, site_id: int) -> list[str]:
    with server.client("device-1") as c:
        return [limit for _, status, limit in listing(c, site_id) if status != "2"]


@pytest.mark.postgres
def test_a_publication_through_one_server_reaches_the_others_cache(pki: DevPki, tmp_path: Path) -> None:
    with _two_servers(pki, tmp_path) as (a, b):
        site_id = int(a.register("device-1").rsplit("/", 1)[1])
        add_control(a, site_id, T0 + 600, 300, 5000)
        feed = _feed(b)
        assert _limits(b, site_id) == ["5000"]  # rendered by b and cached
        with _statements(b.ctx.engine) as sql:
            for _ in range(20):
                assert _limits(b, site_id) == ["5000"]
        assert sql == [], "a cached poll queried the database while the feed was healthy"
        assert feed.healthy()

        add_control(a, site_id, T0 + 1200, 300, 4000)  # published through a
        _eventually(lambda: _limits(b, site_id) == ["5000", "4000"], "b serves a's publication")
        with _statements(b.ctx.engine) as sql:
            assert _limits(b, site_id) == ["5000", "4000"]
        assert sql == []


@pytest.mark.postgres
def test_a_lost_listener_falls_back_to_reads_and_recovers(pki: DevPki, tmp_path: Path) -> None:
    with _two_servers(pki, tmp_path) as (a, b):
        site_id = int(a.register("device-1").rsplit("/", 1)[1])
        add_control(a, site_id, T0 + 600, 300, 5000)
        feed = _feed(b)
        pid = feed.listener_pid()
        assert _limits(b, site_id) == ["5000"]
        feed.retry_after_s = 5.0  # hold the outage open long enough to poll through it
        with a.ctx.engine.connect() as conn:
            killed = conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        assert killed
        _eventually(lambda: not feed.healthy(), "the feed notices its listener is gone")

        # During the outage every poll checks the store, and a publication shows at once.
        add_control(a, site_id, T0 + 1200, 300, 4000)
        with _statements(b.ctx.engine) as sql:
            assert _limits(b, site_id) == ["5000", "4000"]
        assert any("publication_counter" in s for s in sql), "the outage was served from memory"
        add_control(a, site_id, T0 + 1800, 300, 3000)
        assert _limits(b, site_id) == ["5000", "4000", "3000"]
        assert not feed.healthy(), "the test meant to poll during the outage"

        # It reconnects by itself, on a new backend, and is trusted again only then.
        feed.retry_after_s = 0.05
        _eventually(feed.healthy, "the feed listens again", within_s=15)
        assert feed.listener_pid() not in (None, pid)
        add_control(a, site_id, T0 + 2400, 300, 2000)
        _eventually(lambda: _limits(b, site_id)[-1:] == ["2000"], "b serves a publication after recovery")
        with _statements(b.ctx.engine) as sql:
            assert _limits(b, site_id) == ["5000", "4000", "3000", "2000"]
        assert sql == []


@pytest.mark.postgres
def test_listeners_are_visible_to_operators(pki: DevPki, tmp_path: Path) -> None:
    with _two_servers(pki, tmp_path) as (a, b):
        pids = {_feed(a).listener_pid(), _feed(b).listener_pid()}
        with a.ctx.engine.connect() as conn:
            listed = set(
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = :name"
                        " AND datname = current_database()"
                    ),
                    {"name": LISTENER_APPLICATION_NAME},
                ).scalars()
            )
        assert pids == listed


def test_a_change_to_one_network_leaves_another_networks_bodies_cached(database_url: str) -> None:
    """Two engines on one store: one writes, the other serves from its own feed."""
    writer, server = make_engine(database_url), make_engine(database_url)
    upgrade(writer)
    feed = open_change_feed(server)
    assert feed is not None
    try:
        if isinstance(feed, PgChangeFeed):
            _eventually(feed.healthy, "the change feed is listening")
        sessions = session_factory(writer)
        cache = RenderCache()
        net_a, net_b = network_key("north-zone"), network_key("south-zone")
        generation = feed.generation()
        cache.put(
            ("derc", "a"), generation, T0 + 3600, b"A", deps=(net_a,), dep_versions=feed.current((net_a,))
        )
        cache.put(
            ("derc", "b"), generation, T0 + 3600, b"B", deps=(net_b,), dep_versions=feed.current((net_b,))
        )

        with transaction(sessions) as session:
            bump_change(session, net_b)
        _eventually(lambda: feed.current((net_b,)) == (1,), "the feed sees network B's change")
        assert feed.generation() == generation, "a per-network change bumped the global counter"
        assert cache.get(("derc", "a"), generation, T0, feed.current) == b"A"
        assert cache.get(("derc", "b"), generation, T0, feed.current) is None

        with transaction(sessions) as session:
            bump_change(session, net_a)
            bump_change(session, net_a)
        _eventually(lambda: feed.current((net_a, net_b)) == (2, 1), "the feed sees network A's changes")
        assert cache.get(("derc", "a"), generation, T0, feed.current) is None

        with transaction(sessions) as session:
            bump_publication(session)
        _eventually(lambda: feed.current((ALL,)) == (generation + 1,), "the feed sees a publication")
    finally:
        feed.close()
        writer.dispose()
        server.dispose()


def test_a_rolled_back_change_is_never_announced(database_url: str) -> None:
    writer, server = make_engine(database_url), make_engine(database_url)
    upgrade(writer)
    feed = open_change_feed(server)
    assert feed is not None
    try:
        if isinstance(feed, PgChangeFeed):
            _eventually(feed.healthy, "the change feed is listening")
        before = feed.current((ALL, network_key("x")))
        with pytest.raises(RuntimeError), transaction(session_factory(writer)) as session:
            bump_publication(session)
            bump_change(session, network_key("x"))
            raise RuntimeError("the publication fails")
        with transaction(session_factory(writer)) as session:
            bump_change(session, network_key("y"))  # a later commit: everything before it has arrived
        _eventually(lambda: feed.current((network_key("y"),)) == (1,), "the feed sees the later commit")
        assert feed.current((ALL, network_key("x"))) == before
    finally:
        feed.close()
        writer.dispose()
        server.dispose()


def test_sqlite_sees_another_process_within_its_recheck_bound_and_its_own_writes_at_once(
    tmp_path: Path,
) -> None:
    """Another process's commit shows within `recheck_s`; one this process announces (sync) at once;
    a report's commit (no change key) keeps the key versions the feed knows."""
    url = f"sqlite:///{tmp_path / 'gridshare.db'}"
    writer, server = make_engine(url), make_engine(url)
    upgrade(writer)
    sessions = session_factory(writer)
    feed = SqliteChangeFeed(server, recheck_s=0.2)
    key = network_key("north-zone")
    try:
        assert feed.current((ALL, key)) == (0, 0)
        with transaction(sessions) as session:
            bump_change(session, key)
        time.sleep(0.25)
        assert feed.current((ALL, key)) == (0, 1), "not seen after the recheck bound"
        with transaction(sessions) as session:
            bump_publication(session)
            bump_change(session, key)
        feed.sync()  # what every write in the serving process does before it is answered
        assert feed.current((ALL, key)) == (1, 2), "this process's own write not seen at once"
        with transaction(sessions) as session:
            bump_activity(session)  # a report batch: only the activity counter moves
        feed.sync()
        assert feed.current((ALL, key)) == (1, 2)
    finally:
        feed.close()
        writer.dispose()
        server.dispose()


# -- PostgreSQL: keys read when first asked for, memory bounded ---------------------------------------


@contextmanager
def _pg_feed(max_keys: int = 200_000) -> Iterator[tuple[PgChangeFeed, Callable[..., None], Engine]]:
    """A feed on a fresh database, a `bump(*keys)` that commits through another engine, and the
    feed's own engine (to watch the statements it sends)."""
    with fresh_pg_database() as url:
        writer, server = make_engine(url), make_engine(url)
        upgrade(writer)
        sessions = session_factory(writer)
        feed = PgChangeFeed(server, max_keys=max_keys)

        def bump(*keys: str) -> None:
            with transaction(sessions) as session:
                for key in keys:
                    bump_change(session, key)

        try:
            _eventually(feed.healthy, "the change feed is listening")
            yield feed, bump, server
        finally:
            feed.close()
            writer.dispose()
            server.dispose()


@pytest.mark.postgres
def test_a_key_is_read_when_first_asked_for_and_then_follows_notifications() -> None:
    with _pg_feed() as (feed, bump, engine):
        net = network_key("north-zone")
        for _ in range(7):
            bump(net)
        bump(*(network_key(f"other-{i}") for i in range(50)))  # nobody here asks for these
        assert feed.sync()
        assert feed.keys_known() == 0, "notifications for keys nobody asked for were kept"

        with _statements(engine) as sql:
            assert feed.current((ALL, net)) == (0, 7)  # asked for the first time after 7 bumps
        assert len(sql) == 1, "one query for the one unknown key"
        with _statements(engine) as sql:
            for _ in range(20):
                assert feed.current((ALL, net)) == (0, 7)
        assert sql == [], "a known key was read again"

        bump(net)
        _eventually(lambda: feed.current((net,)) == (8,), "the feed follows a later bump")
        with _statements(engine) as sql:
            assert feed.current((net, site_key(1))) == (8, 0)  # a key never bumped is version 0
            assert feed.current((net, site_key(1))) == (8, 0)
        assert len(sql) == 1
        bump(site_key(1))
        assert feed.sync()
        assert feed.current((site_key(1),)) == (1,), "a key first stored as 0 missed its first bump"
        assert feed.keys_known() == 2


@pytest.mark.postgres
def test_a_render_reads_the_keys_it_depends_on_in_one_query_and_known_ones_from_memory() -> None:
    """A first render on PostgreSQL asks the store once for all its unknown keys (not once per key),
    teaches them to the feed, and later renders of the same keys send no query at all."""
    with _pg_feed() as (feed, bump, engine):
        keys = tuple(site_key(i) for i in range(4))
        bump(keys[0], keys[0], keys[2])
        assert feed.sync()
        with Session(engine) as session:
            session.connection()  # the session's own connection is open before we watch
            with _statements(engine) as sql:
                found = change_versions_for_cache(session, keys, feed)
            assert found == {keys[0]: 2, keys[1]: 0, keys[2]: 1, keys[3]: 0}
            assert len(sql) == 1, sql
            with _statements(engine) as sql:
                assert change_versions_for_cache(session, keys, feed) == found
            assert sql == [], "versions the feed knows were read again"
            bump(keys[1])
            assert feed.sync()
            with _statements(engine) as sql:
                assert change_versions_for_cache(session, keys, feed)[keys[1]] == 1
            assert sql == [], "the feed's notified version was not used"


@pytest.mark.postgres
def test_evicted_keys_are_read_again_and_stay_correct() -> None:
    with _pg_feed(max_keys=3) as (feed, bump, engine):
        keys = [site_key(i) for i in range(10)]
        for round_ in range(1, 4):
            bump(*keys)
            assert feed.sync()
            for key in keys:
                assert feed.current((key,)) == (round_,)
            assert feed.current(tuple(keys[:3])) == (round_,) * 3
            assert feed.keys_known() <= 3
        with _statements(engine) as sql:
            assert feed.current(tuple(keys[:3])) == (3, 3, 3)  # the three most recently asked
        assert sql == []
        with _statements(engine) as sql:
            assert feed.current((keys[9],)) == (3,)  # evicted long ago: read again
        assert len(sql) == 1


@pytest.mark.postgres
def test_a_reconnected_feed_forgets_its_keys_and_reads_them_again() -> None:
    with _pg_feed() as (feed, bump, engine):
        net = network_key("north-zone")
        bump(net)
        assert feed.current((net,)) == (1,)
        loaded = feed.keys_loaded
        pid = feed.listener_pid()
        feed.retry_after_s = 2.0  # long enough to bump and read during the outage
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        _eventually(lambda: not feed.healthy(), "the feed notices its listener is gone")
        bump(net)  # notified to nobody: the listener is down
        assert feed.current((net,)) == (2,), "an outage was answered from memory"
        _eventually(feed.healthy, "the feed listens again", within_s=15)
        assert feed.listener_pid() not in (None, pid)
        assert feed.keys_known() == 0
        assert feed.current((net,)) == (2,)
        assert feed.keys_loaded == loaded + 1, "the key was not read again after the reconnect"
        bump(net)
        _eventually(lambda: feed.current((net,)) == (3,), "the feed follows bumps after the reconnect")


@pytest.mark.postgres
@pytest.mark.parametrize("max_keys", [200_000, 4])
def test_versions_never_go_backwards_while_keys_are_bumped_and_asked_for(max_keys: int) -> None:
    """Readers asking for keys (loading them, evicting them) while another connection bumps them."""
    with _pg_feed(max_keys=max_keys) as (feed, bump, engine):
        keys = [site_key(i) for i in range(12)]
        stop = threading.Event()
        failures: list[str] = []

        def writer() -> None:
            rng = random.Random(1)
            for _ in range(400):
                bump(*rng.sample(keys, 2))
            stop.set()

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            seen: dict[str, int] = {}
            while not stop.is_set():
                asked = tuple(rng.sample(keys, 3))
                for key, version in zip(asked, feed.current(asked), strict=True):
                    if version < seen.get(key, 0):
                        failures.append(f"{key} went from {seen[key]} back to {version}")
                    seen[key] = version

        threads = [threading.Thread(target=writer)] + [
            threading.Thread(target=reader, args=(seed,)) for seed in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert failures == []
        assert feed.sync()
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT key, version FROM change_version")).all()
        stored: dict[str, int] = {str(k): int(v) for k, v in rows}
        assert feed.current(tuple(keys)) == tuple(stored.get(k, 0) for k in keys)
        assert feed.keys_known() <= max_keys
