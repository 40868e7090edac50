"""A fleet's writes (issue 12): reports committed in batches, and returning devices answered from reads.

A 201 for a reading or a Response means it is in the store, as any other connection sees it; a report
whose transaction does not commit is never answered 201; a bad report in a batch fails alone. A device
that registers again, or re-sends the NMI it already has, writes and publishes nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, event, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bench.seeding import MeteredSite, add_metered_site
from gridshare.certs.devpki import DevPki
from gridshare.core.mrid import new_mrid
from gridshare.server.shared import reports
from gridshare.server.wire import hrefs
from gridshare.store import db
from gridshare.store.bulk_insert import InsertBatch
from gridshare.store.change_feed import change_versions, owner_key
from gridshare.store.db import (
    activity_bump,
    activity_value,
    bump_activity,
    make_engine,
    publication_value,
    session_factory,
    upgrade,
)
from gridshare.store.group_commit import GroupCommitWriter, WriterStopped, defer_insert
from gridshare.store.models import PublicationCounter, Response, TelemetryReading
from tests.support.bodies import (
    SEP_XML,
    connection_point,
    end_device,
    meter_reading,
    mirror_usage_point,
    response,
)
from tests.support.engine import control_for_site
from tests.support.processes import GRIDSHARE, clean_env, start, wait_until
from tests.support.servers import T0, RunningServer, free_port, fresh_pg_database, running_server

MUP_MRID = "5A1E0000000000000000000000000001"
MMR_MRID = "5A1E0000000000000000000000000A01"
DEVICES = 3  # the dev PKI has three device certificates
LANES = 2  # connections per device posting at once
POSTS_PER_DEVICE = 8
RSP_LIST = hrefs.RESPONSE_LIST_T.path


def _fresh_engine(server: RunningServer) -> Engine:
    """A connection pool of its own: what it sees is committed, not something cached in the server."""
    return make_engine(server.ctx.settings.database_url)


def _stored_values(engine: Engine) -> set[int]:
    with session_factory(engine)() as s:
        return set(s.execute(select(TelemetryReading.value)).scalars())


def _mmr_mrid(name: str) -> str:
    """Each device's own MirrorMeterReading mRID (one mRID names one reading across the server)."""
    return f"{MMR_MRID[:-2]}{int(name.rsplit('-', 1)[1]):02X}"


def _mirror(server: RunningServer, name: str) -> str:
    """`name` registers and creates its MirrorUsagePoint (its first reading with it); returns the href."""
    server.register(name)
    me = server.pki.client(name)
    body = mirror_usage_point(_mmr_mrid(name)[::-1], me.lfdi, _mmr_mrid(name), T0 - 300, 1)
    with server.client(name) as c:
        r = c.post("/mup", content=body, headers=SEP_XML)
    assert r.status_code == 201, r.text
    return r.headers["location"]


def test_readings_from_many_devices_are_stored_when_answered(server: RunningServer) -> None:
    names = [f"device-{i}" for i in range(1, DEVICES + 1)]
    mups = {name: _mirror(server, name) for name in names}

    def post_all(name: str, lane: int) -> list[tuple[int, int]]:
        device = names.index(name)
        answers = []
        with server.client(name) as c:
            for k in range(POSTS_PER_DEVICE):
                value = 1000 * (device + 1) + 100 * lane + k
                # one post in all is from a clock far in the future: refused, alone
                start_s = T0 + 10**8 if (device, lane, k) == (0, 0, 3) else T0 - 60 * k
                body = meter_reading(_mmr_mrid(name), start_s, value)
                r = c.post(mups[name], content=body, headers=SEP_XML)
                answers.append((r.status_code, value))
        return answers

    jobs = [(name, lane) for name in names for lane in range(LANES)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = [a for lane_answers in pool.map(lambda job: post_all(*job), jobs) for a in lane_answers]
    refused = [value for status, value in answers if status == 400]
    accepted = {value for status, value in answers if status == 201}
    assert refused == [1003]
    assert len(accepted) == DEVICES * LANES * POSTS_PER_DEVICE - 1
    engine = _fresh_engine(server)
    try:
        stored = _stored_values(engine)
    finally:
        engine.dispose()
    assert accepted <= stored
    assert 1003 not in stored


def test_responses_from_many_devices_are_stored_when_answered(server: RunningServer) -> None:
    names = [f"device-{i}" for i in range(1, DEVICES + 1)]
    for name in names:
        server.register(name)
    subjects = {name: control_for_site(server, server.pki.client(name).lfdi) for name in names}

    def respond(name: str) -> list[str]:
        lfdi = server.pki.client(name).lfdi
        locations = []
        with server.client(name) as c:
            for status in (1, 2, 3):
                body = response(subjects[name], lfdi, status, T0 + status)
                r = c.post(RSP_LIST, content=body, headers=SEP_XML)
                assert r.status_code == 201, r.text
                locations.append(r.headers["location"])
            assert (
                c.post(RSP_LIST, content=response(new_mrid(0), lfdi, 1, T0), headers=SEP_XML).status_code
                == 400
            )
        return locations

    with ThreadPoolExecutor(DEVICES) as pool:
        locations = [loc for device_locations in pool.map(respond, names) for loc in device_locations]
    assert len(set(locations)) == DEVICES * 3
    engine = _fresh_engine(server)
    try:
        with session_factory(engine)() as s:
            stored = {hrefs.response(i) for i in s.execute(select(Response.id)).scalars()}
    finally:
        engine.dispose()
    assert set(locations) == stored
    with server.client(names[0]) as c:  # each Location names that device's Response
        r = c.get(locations[0])
        assert r.status_code == 200 and subjects[names[0]] in r.text


@contextmanager
def _writes(engine: Engine) -> Iterator[list[str]]:
    """Every INSERT, UPDATE or DELETE the server's engine sends while in the block."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _publication(server: RunningServer) -> int:
    with server.ctx.sessions() as s:
        return publication_value(s)


def test_a_returning_device_writes_and_publishes_nothing(server: RunningServer) -> None:
    href = server.register("device-1")
    me = server.pki.client("device-1")
    nmi = "VAAA000001"
    with server.client("device-1") as c:
        assert c.put(f"{href}/cp", content=connection_point(nmi), headers=SEP_XML).status_code == 204
        before = _publication(server)
        with _writes(server.ctx.engine) as writes:
            r = c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML)
            assert r.status_code == 409 and r.headers["location"] == href
            # the NMI it already has, in its own spelling and with the checksum digit
            for again in (nmi, nmi.lower(), nmi + "4"):
                r = c.put(f"{href}/cp", content=connection_point(again), headers=SEP_XML)
                assert r.status_code == 204 and r.headers["location"] == f"{href}/cp", r.text
        assert writes == []
        assert _publication(server) == before
        assert c.get(f"{href}/cp").text.count(nmi) == 1  # still bound in its first spelling

        # a different NMI is a change: written, and its client's key moves (a binding publishes nothing
        # to other clients: docs/change-feed.md)
        mine = owner_key(me.lfdi, None)
        with server.ctx.sessions() as s:
            key_before = change_versions(s, [mine])[mine]
        r = c.put(f"{href}/cp", content=connection_point("4102000002"), headers=SEP_XML)
        assert r.status_code == 204
        with server.ctx.sessions() as s:
            assert change_versions(s, [mine])[mine] > key_before
        assert _publication(server) == before
        assert "4102000002" in c.get(f"{href}/cp").text
        # a new device still registers (the write path)
        other = server.pki.client("device-2")
    with server.client("device-2") as c:
        r = c.post("/edev", content=end_device(other.sfdi, other.lfdi), headers=SEP_XML)
        assert r.status_code == 201, r.text


# The writer itself, on a store of its own (SQLite and PostgreSQL).


@pytest.fixture
def store(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _metered(engine: Engine) -> MeteredSite:
    """A site, mirror and MirrorMeterReading for reports to point at (made directly in the store)."""
    with session_factory(engine)() as s, s.begin():
        return add_metered_site(s, lfdi="ab" * 20, now_s=T0, mup_mrid=MUP_MRID, mmr_mrid=MMR_MRID)


def _mmr_id(engine: Engine) -> int:
    return _metered(engine).mmr_id


def _insert(mmr_id: int, value: int) -> Callable[[Session], int]:
    def apply(session: Session) -> int:
        session.add(
            TelemetryReading(
                mmr_id=mmr_id, time_s=T0, duration_s=300, value=value, power_of_ten=0, received_s=T0
            )
        )
        return value

    return apply


class HeldBatch:
    """The writer's current batch kept open by a job waiting on a gate: whatever is submitted until
    `release()` queues up behind it and goes in as the next batch, together."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self.gate, entered = threading.Event(), threading.Event()

        def hold(_session: Session) -> str:
            entered.set()
            assert self.gate.wait(30)
            return "held"

        self.job = writer.submit(hold)
        assert entered.wait(30)

    def release(self) -> None:
        self.gate.set()
        assert self.job.result(30) == "held"

    async def release_async(self) -> None:
        self.gate.set()
        assert await asyncio.wrap_future(self.job) == "held"


@contextmanager
def held_batch(writer: GroupCommitWriter) -> Iterator[HeldBatch]:
    """A `HeldBatch` on `writer`; on leaving, the gate opens (if the test failed first), the writer closes."""
    hold = HeldBatch(writer)
    try:
        yield hold
    finally:
        hold.gate.set()
        writer.close()


def test_a_bad_write_fails_alone_and_its_batch_mates_commit(store: Engine) -> None:
    mmr_id = _mmr_id(store)
    writer = GroupCommitWriter(session_factory(store))
    with held_batch(writer) as hold:
        # queued while the first batch is open: these three form the next batch together
        good = [writer.submit(_insert(mmr_id, v)) for v in (1, 2)]
        bad = writer.submit(_insert(mmr_id + 1000, 3))  # no such MirrorMeterReading
        hold.release()
        assert [f.result(30) for f in good] == [1, 2]
        with pytest.raises(IntegrityError):
            bad.result(30)
    assert writer.jobs_committed == 3
    assert _stored_values(store) == {1, 2}


def test_a_write_is_never_reported_done_unless_its_transaction_commits(store: Engine) -> None:
    mmr_id = _mmr_id(store)

    def refuse_commit(_session: Session) -> None:
        raise RuntimeError("the transaction fails before COMMIT")

    writer = GroupCommitWriter(session_factory(store), after_batch=refuse_commit)
    futures = [writer.submit(_insert(mmr_id, v)) for v in range(5)]
    for future in futures:
        with pytest.raises(RuntimeError):
            future.result(30)
    writer.close()
    assert _stored_values(store) == set()
    assert writer.jobs_committed == 0


def test_a_stopped_writer_commits_what_it_accepted_and_refuses_the_rest(store: Engine) -> None:
    mmr_id = _mmr_id(store)
    writer = GroupCommitWriter(session_factory(store))
    accepted = [writer.submit(_insert(mmr_id, v)) for v in range(1, 4)]
    writer.close()
    assert [f.result(30) for f in accepted] == [1, 2, 3]
    with pytest.raises(WriterStopped):
        writer.submit(_insert(mmr_id, 9)).result(30)
    assert _stored_values(store) == {1, 2, 3}


def test_an_idle_writer_keeps_no_thread(store: Engine) -> None:
    mmr_id = _mmr_id(store)
    writer = GroupCommitWriter(session_factory(store), idle_s=0.05)
    assert writer.submit(_insert(mmr_id, 1)).result(30) == 1
    for _ in range(200):
        if writer._thread is None:
            break
        threading.Event().wait(0.05)
    assert writer._thread is None
    assert writer.submit(_insert(mmr_id, 2)).result(30) == 2  # starts another
    writer.close()
    with session_factory(store)() as s:
        assert s.execute(select(func.count(TelemetryReading.id))).scalar_one() == 2


def _reading_row(mmr_id: int, value: int) -> dict[str, int | None]:
    return {
        "mmr_id": mmr_id,
        "time_s": T0,
        "duration_s": 300,
        "value": value,
        "power_of_ten": 0,
        "quality_flags": None,
        "received_s": T0,
    }


def _deferred(mmr_id: int, value: int) -> Callable[[Session], int]:
    """A job as the report writer runs a reading: its row queued for the batch's one insert."""

    def apply(session: Session) -> int:
        defer_insert(session, TelemetryReading.__table__, [_reading_row(mmr_id, value)])
        return value

    return apply


def test_coroutines_hear_their_batch_only_after_it_commits(store: Engine) -> None:
    """Many requests of one event loop wait on one batch: each hears its own result, and only once its
    row is visible to another connection."""
    mmr_id = _mmr_id(store)
    writer = GroupCommitWriter(session_factory(store))
    other = make_engine(str(store.url.render_as_string(hide_password=False)))
    seen_when_answered: list[set[int]] = []

    async def post(value: int) -> int:
        result = await writer.run(_deferred(mmr_id, value))
        seen_when_answered.append(_stored_values(other))
        return result

    async def fleet() -> list[int]:
        return list(await asyncio.gather(*(post(v) for v in range(1, 41))))

    try:
        assert asyncio.run(fleet()) == list(range(1, 41))
    finally:
        writer.close()
        other.dispose()
    assert all(len(seen) >= 1 for seen in seen_when_answered)
    assert writer.batches_committed < 40  # they shared transactions
    assert _stored_values(store) == set(range(1, 41))


def test_a_bad_deferred_row_fails_its_own_request_alone(store: Engine) -> None:
    """A row that breaks the batch's executemany (no such MirrorMeterReading) fails only its request."""
    mmr_id = _mmr_id(store)
    writer = GroupCommitWriter(session_factory(store))

    async def batch(hold: HeldBatch) -> list[object]:
        # queued while the first batch is open: these form the next batch together
        posts = [
            asyncio.ensure_future(writer.run(_deferred(mmr_id + (1000 if v == 2 else 0), v)))
            for v in (1, 2, 3)
        ]
        await asyncio.sleep(0.05)
        await hold.release_async()
        return list(await asyncio.gather(*posts, return_exceptions=True))

    with held_batch(writer) as hold:
        first, second, third = asyncio.run(batch(hold))
    assert (first, third) == (1, 3)
    assert isinstance(second, IntegrityError)
    assert _stored_values(store) == {1, 3}


def test_a_request_that_goes_away_does_not_cancel_its_write(store: Engine) -> None:
    """The client hung up (its task is cancelled): the report it sent is still committed."""
    mmr_id = _mmr_id(store)
    writer = GroupCommitWriter(session_factory(store))

    async def hang_up(hold: HeldBatch) -> None:
        gone = asyncio.ensure_future(writer.run(_deferred(mmr_id, 7)))
        await asyncio.sleep(0.01)
        gone.cancel()
        await hold.release_async()
        assert await writer.run(_deferred(mmr_id, 8)) == 8

    with held_batch(writer) as hold:
        asyncio.run(hang_up(hold))
    assert _stored_values(store) == {7, 8}


def test_a_lone_report_is_not_held_back_and_a_busy_fleet_shares_transactions(store: Engine) -> None:
    """The writer waits for more reports only when several are arriving: one device's reading is
    committed at once, while a burst from many devices fills one transaction."""
    mmr_id = _mmr_id(store)
    writer = GroupCommitWriter(session_factory(store), linger_s=2.0)
    started = time.monotonic()
    try:
        assert writer.submit(_insert(mmr_id, 1)).result(30) == 1
    except BaseException:
        writer.close()
        raise
    assert time.monotonic() - started < 1.0  # not the 2 s linger

    with held_batch(writer) as hold:
        burst = [writer.submit(_insert(mmr_id, v)) for v in range(10, 20)]
        before = writer.batches_committed
        hold.release()
        assert [f.result(30) for f in burst] == list(range(10, 20))
        assert writer.batches_committed - before <= 2  # the held batch, then the burst together
    assert _stored_values(store) == {1, *range(10, 20)}


def _response_fields(site_id: int, mrid: str, status: int) -> dict[str, object]:
    return {
        "site_id": site_id,
        "control_id": None,
        "subject_mrid": mrid,
        "status": status,
        "created_s": T0,
        "received_s": T0,
    }


def _report_writer(store: Engine) -> GroupCommitWriter:
    """A writer as the server builds it for device reports: batches of reports go to InsertBatch."""
    return GroupCommitWriter(
        session_factory(store),
        after_batch=bump_activity,
        insert_batch=InsertBatch(store, also=(activity_bump(),)),
    )


@pytest.mark.parametrize("path", ["insert batch", "session"])
def test_each_response_in_a_shared_insert_is_told_its_own_id(store: Engine, path: str) -> None:
    """Responses of one batch go in one statement: each request's Location must still name its own row
    (status and subject), in whatever order the batch held them, on the report writer's path and on a
    session's (a batch that mixes reports with other jobs)."""
    site_id = _metered(store).site_id
    writer = _report_writer(store) if path == "insert batch" else GroupCommitWriter(session_factory(store))
    sent = {f"{k:032X}": k % 3 + 1 for k in range(1, 13)}
    with held_batch(writer) as hold:
        handles = {
            mrid: writer.submit(reports.response_insert(_response_fields(site_id, mrid, status)))
            for mrid, status in sent.items()
        }
        hold.release()
        ids = {mrid: int(f.result(30)[0]) for mrid, f in handles.items()}
    assert writer.batches_committed == 2  # the held one, then all twelve Responses together
    with session_factory(store)() as s:
        rows = {r.id: (r.subject_mrid, r.status) for r in s.execute(select(Response)).scalars()}
    assert {mrid: rows[i] for mrid, i in ids.items()} == {m: (m, st) for m, st in sent.items()}


def test_a_batch_of_reports_commits_its_readings_responses_and_activity_together(store: Engine) -> None:
    """The report writer's batch (readings and Responses from many devices): every row stored, each
    Response told its own key, the activity counter bumped once, in one transaction."""
    metered = _metered(store)
    mmr_id, site_id = metered.mmr_id, metered.site_id
    with session_factory(store)() as s:
        before = activity_value(s)
    writer = _report_writer(store)
    with held_batch(writer) as hold:
        readings = [
            writer.submit(reports.readings_insert([_reading_row(mmr_id, v), _reading_row(mmr_id, v + 100)]))
            for v in range(1, 6)
        ]
        responses = [
            writer.submit(reports.response_insert(_response_fields(site_id, f"{k:032X}", 1))) for k in (7, 8)
        ]
        hold.release()
        assert [f.result(30) for f in readings] == [[]] * 5
        keys = [int(f.result(30)[0]) for f in responses]
    assert writer.batches_committed == 2
    assert _stored_values(store) == {*range(1, 6), *range(101, 106)}
    with session_factory(store)() as s:
        stored = dict(s.execute(select(Response.id, Response.subject_mrid)).all())
        assert activity_value(s) == before + 2  # the held batch and the reports' batch
    assert [stored[k] for k in keys] == [f"{7:032X}", f"{8:032X}"]


def test_a_bad_report_in_an_insert_batch_fails_alone(store: Engine) -> None:
    """One report whose row the store refuses (its MirrorMeterReading is gone) fails by itself with the
    store's own error (answered 409 by the route); the reports batched with it are stored."""
    mmr_id = _mmr_id(store)
    writer = _report_writer(store)
    with held_batch(writer) as hold:
        posts = [
            writer.submit(reports.readings_insert([_reading_row(mmr_id + (1000 if v == 2 else 0), v)]))
            for v in (1, 2, 3)
        ]
        hold.release()
        assert posts[0].result(30) == [] and posts[2].result(30) == []
        with pytest.raises(IntegrityError):
            posts[1].result(30)
    assert _stored_values(store) == {1, 3}


def test_an_insert_batch_is_all_or_nothing(store: Engine) -> None:
    """If any part of the batch's one transaction fails (here its bookkeeping UPDATE), none of its
    reports is stored and none is told it was."""
    mmr_id = _mmr_id(store)
    counters = PublicationCounter.__table__
    failing = update(counters).where(counters.c.id == 2).values(value=None)  # NOT NULL: refused
    writer = GroupCommitWriter(session_factory(store), insert_batch=InsertBatch(store, also=(failing,)))
    try:
        futures = [writer.submit(reports.readings_insert([_reading_row(mmr_id, v)])) for v in range(5)]
        for future in futures:
            with pytest.raises(IntegrityError):
                future.result(30)
    finally:
        writer.close()
    assert _stored_values(store) == set()
    assert writer.jobs_committed == 0


# PostgreSQL: no ping on every checkout, yet a dead pooled connection costs at most a retried request.


def _kill_server_backends(server: RunningServer) -> int:
    """Terminate the server's pooled PostgreSQL connections (not its change-feed listener)."""
    killer = make_engine(server.ctx.settings.database_url)
    try:
        with killer.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND application_name <> 'gridshare-change-feed'"
                )
            ).scalars()
            kill = text("SELECT pg_terminate_backend(:p)")
            return sum(bool(conn.execute(kill, {"p": p}).scalar()) for p in list(pids))
    finally:
        killer.dispose()


def _store_read(c: httpx.Client) -> int:
    """A request answered from the store every time (a device's own ResponseList is not cached)."""
    return c.get("/rsps/1/rsp").status_code


@pytest.mark.postgres
@pytest.mark.parametrize("idle", [False, True], ids=["busy", "idle"])
def test_a_dead_pooled_connection_is_retried_not_a_500(
    pki: DevPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle: bool
) -> None:
    if idle:  # every connection counts as idle: checked at checkout, so nobody sees the failure
        monkeypatch.setattr(db, "_PG_PING_IDLE_S", 0.0)
    with fresh_pg_database() as url, running_server(pki, url, tmp_path) as server:
        server.register("device-1")
        with server.client("device-1") as c:
            assert _store_read(c) == 200
            assert _kill_server_backends(server) >= 1
            first = _store_read(c)
            # in use recently, so not pinged: the failed statement drops the pool and asks for a retry
            assert first == (200 if idle else 503)
            assert [_store_read(c) for _ in range(3)] == [200, 200, 200]


def test_a_waiter_that_gives_up_cannot_cancel_a_write(store: Engine) -> None:
    mmr_id = _mmr_id(store)
    writer = GroupCommitWriter(session_factory(store))
    with held_batch(writer) as hold:
        abandoned = writer.submit(_insert(mmr_id, 1))
        kept = writer.submit(_insert(mmr_id, 2))
        assert not abandoned.cancel()  # as asyncio does for a request whose client hung up
        hold.release()
        assert [abandoned.result(30), kept.result(30)] == [1, 2]
    assert _stored_values(store) == {1, 2}


# A real `gridshare serve` killed mid-stream: every reading it answered 201 survived the kill.


def _device_tls(pki: DevPki, name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    cert = pki.client(name)
    ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    return ctx


def test_every_reading_answered_201_survives_a_kill(pki: DevPki, database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        port=str(port),
        operator_port=str(free_port()),
        tls_ca_file=str(pki.ca_path),
        tls_cert_file=str(pki.server_cert_path),
        tls_key_file=str(pki.server_key_path),
    )
    proc = start("gridshare", [str(GRIDSHARE), "serve", "--workers", "1"], env, tmp_path / "logs", tmp_path)
    base = f"https://127.0.0.1:{port}"
    names = ["device-1", "device-2", "device-3"]
    try:
        tls = {name: _device_tls(pki, name) for name in names}
        wait_until(
            lambda: httpx.get(f"{base}/dcap", verify=tls["device-1"], timeout=2).status_code == 200,
            "serve",
            [proc],
        )
        now_s = int(time.time())
        mups = {}
        for name in names:
            me = pki.client(name)
            with httpx.Client(base_url=base, verify=tls[name], timeout=10) as c:
                assert (
                    c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML).status_code == 201
                )
                body = mirror_usage_point(_mmr_mrid(name)[::-1], me.lfdi, _mmr_mrid(name), now_s - 60, 1)
                r = c.post("/mup", content=body, headers=SEP_XML)
                assert r.status_code == 201, r.text
                mups[name] = r.headers["location"]
        accepted: list[int] = []
        enough = threading.Event()

        def post_until_killed(name: str) -> None:
            device = names.index(name)
            with httpx.Client(base_url=base, verify=tls[name], timeout=10) as c:
                for k in range(100_000):
                    value = 1_000_000 * (device + 1) + k
                    body = meter_reading(_mmr_mrid(name), now_s - k % 600, value)
                    try:
                        r = c.post(mups[name], content=body, headers=SEP_XML)
                    except httpx.HTTPError:
                        return  # the server is gone
                    if r.status_code == 201:
                        accepted.append(value)
                        if len(accepted) >= 150:
                            enough.set()

        posters = [threading.Thread(target=post_until_killed, args=(name,)) for name in names]
        for t in posters:
            t.start()
        assert enough.wait(120), proc.tail()
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown: whatever was queued or mid-commit is lost
        for t in posters:
            t.join(30)
    finally:
        proc.stop()
    engine = make_engine(database_url)
    try:
        stored = _stored_values(engine)
    finally:
        engine.dispose()
    answered = set(accepted)
    assert len(answered) >= 150
    assert answered <= stored, f"{len(answered - stored)} readings answered 201 are not in the store"
