"""A device's routine writes answered in the raw-ASGI front (server/shared/fast_reports.py and the
no-op writes of server/shared/fastpath.py): without reading the store, yet with the route's rules.

Once a report's route has checked it against the store, the next report from the same client is
checked against that remembered check; these tests pin what a device and an operator would notice:
the report is in the store when the 201 arrives, another client never passes on someone else's check,
and an operator's change (a mirror deleted, a control cancelled, an EndDevice decommissioned, an NMI
moved) refuses the next write at once instead of answering from before. Both databases, real mTLS.
"""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from gridshare.server.shared.metrics import device_metric_families
from gridshare.store.models import MirrorMeterReading, MirrorUsagePoint, TelemetryReading
from gridshare.store.models import Response as ResponseRow
from tests.support.bodies import (
    SEP_XML,
    connection_point,
    end_device,
    meter_reading,
    mirror_usage_point,
    response,
)
from tests.support.engine import control_for_site, device_with_everything, statements
from tests.support.operator_api import OPERATOR, running_operator_api
from tests.support.servers import T0, RunningServer

MMR = "22" * 16  # the MirrorMeterReading device_with_everything's mirror holds


def _count(server: RunningServer, table: type) -> int:
    with server.ctx.sessions() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())


def _reads(sql: list[str]) -> list[str]:
    return [q for q in sql if q.lstrip().upper().startswith("SELECT")]


def _post(c: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return c.post(path, content=body, headers=SEP_XML)


def _mirror(paths: list[str]) -> str:
    return next(p for p in paths if p.startswith("/mup/"))


def test_a_routine_reading_is_stored_before_its_201_without_a_read(server: RunningServer) -> None:
    _, _, paths = device_with_everything(server)
    mup = _mirror(paths)
    with server.client("device-1") as c:
        assert _post(c, mup, meter_reading(MMR, T0 - 60, 1500)).status_code == 201  # checked by the route
        for k in range(3):
            before = _count(server, TelemetryReading)
            with statements(server) as sql:
                r = _post(c, mup, meter_reading(MMR, T0 - 50 + k, 1600 + k))
            assert (r.status_code, r.headers["location"]) == (201, mup), r.text
            assert _count(server, TelemetryReading) == before + 1  # committed when answered
            assert _reads(sql) == [], "a routine reading read the store"
            assert any("telemetry_reading" in q for q in sql)


def test_a_remembered_check_is_never_another_clients(server: RunningServer) -> None:
    _, _, paths = device_with_everything(server)
    server.register("device-2")
    mup = _mirror(paths)
    with server.client("device-1") as mine, server.client("device-2") as theirs:
        assert _post(mine, mup, meter_reading(MMR, T0 - 60, 1500)).status_code == 201
        assert _post(mine, mup, meter_reading(MMR, T0 - 59, 1500)).status_code == 201
        before = _count(server, TelemetryReading)
        r = _post(theirs, mup, meter_reading(MMR, T0 - 58, 9999))
        assert r.status_code == 404, r.text
        assert _count(server, TelemetryReading) == before


def test_refusals_still_come_with_the_routes_reasons(server: RunningServer) -> None:
    _, _, paths = device_with_everything(server)
    mup = _mirror(paths)
    with server.client("device-1") as c:
        assert _post(c, mup, meter_reading(MMR, T0 - 60, 1500)).status_code == 201
        before = _count(server, TelemetryReading)
        ahead = _post(c, mup, meter_reading(MMR, T0 + 86_400, 1500))  # its clock is a day fast
        assert ahead.status_code == 400 and "ahead of the server's clock" in ahead.text
        broken = _post(c, mup, b"<MirrorMeterReading xmlns='urn:ieee:std:2030.5:ns'><mRID>zz")
        assert broken.status_code == 400 and broken.text.strip()
        assert _count(server, TelemetryReading) == before
        new_reading = _post(c, mup, meter_reading("33" * 16, T0 - 60, 1500))  # no ReadingType yet
        assert new_reading.status_code == 400 and "ReadingType" in new_reading.text


def test_a_mirror_the_operator_deleted_refuses_the_next_reading(server: RunningServer) -> None:
    site_id, _, paths = device_with_everything(server)
    mup = _mirror(paths)
    with server.client("device-1") as c:
        for k in range(2):
            assert _post(c, mup, meter_reading(MMR, T0 - 60 + k, 1500)).status_code == 201
        with running_operator_api(server.ctx) as api, api.client(OPERATOR) as op:
            assert op.delete(f"/sites/{site_id}/mirror-usage-points").status_code == 200
        r = _post(c, mup, meter_reading(MMR, T0 - 50, 1500))
        assert r.status_code == 404, r.text


def test_a_response_to_a_cancelled_control_is_still_accepted_but_not_to_a_deleted_site(
    server: RunningServer,
) -> None:
    me = server.pki.client("device-1")
    site_id = int(server.register("device-1").rsplit("/", 1)[1])
    mrid = control_for_site(server, me.lfdi)
    with server.client("device-1") as c:
        locations = []
        for status, at in ((1, T0), (2, T0 + 1), (3, T0 + 2)):  # received, started, completed
            r = _post(c, "/rsps/1/rsp", response(mrid, me.lfdi, status, at))
            assert r.status_code == 201, r.text
            locations.append(r.headers["location"])
        assert len(set(locations)) == 3 and _count(server, ResponseRow) == 3
        assert [c.get(loc).status_code for loc in locations] == [200, 200, 200]
        unknown = _post(c, "/rsps/1/rsp", response("AB" * 16, me.lfdi, 1, T0))
        assert unknown.status_code == 400 and "subject" in unknown.text
        with running_operator_api(server.ctx) as api, api.client(OPERATOR) as op:
            assert op.delete(f"/sites/{site_id}").status_code == 204
        gone = _post(c, "/rsps/1/rsp", response(mrid, me.lfdi, 4, T0 + 3))
        assert gone.status_code == 400, gone.text
        assert _count(server, ResponseRow) == 0  # its Responses went with the site


def test_a_returning_device_re_registers_from_memory_until_it_is_decommissioned(
    server: RunningServer,
) -> None:
    me = server.pki.client("device-1")
    location = server.register("device-1")
    site_id = int(location.rsplit("/", 1)[1])
    body = end_device(me.sfdi, me.lfdi)
    with server.client("device-1") as c:
        first = _post(c, "/edev", body)
        assert (first.status_code, first.headers["location"]) == (409, location)
        with statements(server) as sql:
            again = _post(c, "/edev", body)
        assert sql == [], "a returning device's registration reached the database"
        assert (again.status_code, again.headers["location"], again.content) == (409, location, first.content)
        with running_operator_api(server.ctx) as api, api.client(OPERATOR) as op:
            assert op.delete(f"/sites/{site_id}").status_code == 204
        fresh = _post(c, "/edev", body)
        assert fresh.status_code == 201, fresh.text  # registered afresh, not told it still exists


def test_a_resent_nmi_is_answered_from_memory_until_the_operator_moves_it(server: RunningServer) -> None:
    nmi = "4102345678"
    site_id = int(server.register("device-1").rsplit("/", 1)[1])
    other_id = int(server.register("device-2").rsplit("/", 1)[1])
    cp = f"/edev/{site_id}/cp"
    with server.client("device-1") as c:
        assert c.put(cp, content=connection_point(nmi), headers=SEP_XML).status_code == 204  # binds it
        assert c.put(cp, content=connection_point(nmi), headers=SEP_XML).status_code == 204  # unchanged
        with statements(server) as sql:
            r = c.put(cp, content=connection_point(nmi), headers=SEP_XML)
        assert (r.status_code, r.headers["location"]) == (204, cp)
        assert sql == [], "re-sending its own NMI reached the database"
        with running_operator_api(server.ctx) as api, api.client(OPERATOR) as op:
            moved = op.put(f"/nmis/{nmi}/site", json={"site_id": other_id})
            assert moved.status_code == 200, moved.text
        refused = c.put(cp, content=connection_point(nmi), headers=SEP_XML)
        assert refused.status_code == 409, refused.text


def test_re_posting_the_same_mirror_keeps_the_devices_bodies_cached(server: RunningServer) -> None:
    """A device re-posts its MirrorUsagePoint at every discovery: its readings are stored, but the
    mirror is unchanged, so its DeviceCapability and mirror list stay cached; a real change shows."""
    me = server.pki.client("device-1")
    _, _, paths = device_with_everything(server)
    mirror_body = mirror_usage_point("11" * 16, me.lfdi, MMR, T0 - 240, 1300)
    with server.client("device-1") as c:
        before = _count(server, TelemetryReading)
        assert _post(c, "/mup", mirror_body).status_code == 201
        assert _count(server, TelemetryReading) == before + 1
        for p in ("/dcap", "/mup", _mirror(paths)):
            assert c.get(p).status_code == 200
        server.clock.advance(60)  # a minute later, as at a device's next discovery
        again = mirror_usage_point("11" * 16, me.lfdi, MMR, T0 - 120, 1310)  # same mirror, a new reading
        assert _post(c, "/mup", again).status_code == 201
        with statements(server) as sql:
            for p in ("/dcap", "/mup", _mirror(paths)):
                assert c.get(p).status_code == 200
        assert sql == [], "re-posting an unchanged mirror re-rendered the device's bodies"
        shown = c.get(_mirror(paths)).content
        changed = mirror_body.replace(b"<roleFlags>49</roleFlags>", b"<roleFlags>41</roleFlags>")
        assert changed != mirror_body
        assert _post(c, "/mup", changed).status_code == 201
        now_shown = c.get(_mirror(paths)).content
        assert now_shown != shown and b"41" in now_shown


def _report_counts() -> tuple[float, float]:
    families = {f.name: f for f in device_metric_families()}
    return (
        families["gridshare_report_transactions"].samples[0].value,
        families["gridshare_reports_committed"].samples[0].value,
    )


def test_operators_see_how_many_reports_each_transaction_held(server: RunningServer) -> None:
    """/metrics counts committed reports and the transactions that held them: their ratio is the
    batch size an operator watches to see whether the store keeps up with the fleet."""
    _, _, paths = device_with_everything(server)
    mup = _mirror(paths)
    with server.client("device-1") as c:
        assert _post(c, mup, meter_reading(MMR, T0 - 60, 1500)).status_code == 201
        transactions, reports = _report_counts()
        for k in range(5):
            assert _post(c, mup, meter_reading(MMR, T0 - 50 + k, 1600 + k)).status_code == 201
    after_transactions, after_reports = _report_counts()
    assert after_reports - reports == 5
    assert 1 <= after_transactions - transactions <= 5


def test_only_writes_that_change_what_is_cached_wait_for_the_change_feed(server: RunningServer) -> None:
    """Read-your-writes: a write is answered once the change feed has heard of it, so the GET after it
    is never the body from before. A re-post of the same mirror (with a reading) and a report change
    nothing cached and skip that wait; a re-post that changes the mirror still waits, and the GET right
    after it shows the change."""
    assert server.front is not None
    me = server.pki.client("device-1")
    server.register("device-1")
    mup_mrid, mmr = "3" * 32, "4" * 32

    def mirror(status: int, reading_s: int) -> bytes:
        body = mirror_usage_point(mup_mrid, me.lfdi, mmr, reading_s, 1)
        return body.replace(b"<status>1</status>", f"<status>{status}</status>".encode())

    with server.client("device-1") as c:
        location = _post(c, "/mup", mirror(1, T0 - 300)).headers["location"]
        for k in range(6):
            status = 1 if k % 3 else 0  # changed, changed back, then re-posted unchanged (with a reading)
            waited = server.front._writes
            r = _post(c, "/mup", mirror(status, T0 - 290 + k))
            assert (r.status_code, r.headers["location"]) == (201, location), r.text
            assert server.front._writes - waited == (0 if k % 3 == 2 else 1), k
            shown = c.get(location)
            assert shown.status_code == 200 and f"<status>{status}</status>" in shown.text, (k, shown.text)
        waited = server.front._writes
        assert _post(c, location, meter_reading(mmr, T0 - 200, 7)).status_code == 201
        assert server.front._writes == waited
    assert _count(server, TelemetryReading) == 8


def test_a_returning_devices_unchanged_mirror_is_stored_from_memory_until_it_changes(
    server: RunningServer,
) -> None:
    """Every discovery re-posts the device's MirrorUsagePoint with a reading. Once the route has seen it
    unchanged, the next re-post is checked against that memory: its reading is in the store when the
    201 (with the mirror's Location) arrives, and nothing is read. Another client never passes on that
    memory, a changed mirror still reaches the store, and once the operator deletes the mirror the next
    post makes a new one instead of answering with the old Location."""
    me = server.pki.client("device-1")
    site_id, _, paths = device_with_everything(server)
    mup = _mirror(paths)
    server.register("device-2")

    def mirror(reading_s: int, role_flags: int = 49) -> bytes:
        body = mirror_usage_point("11" * 16, me.lfdi, MMR, reading_s, 1300)
        return body.replace(b"<roleFlags>49</roleFlags>", f"<roleFlags>{role_flags}</roleFlags>".encode())

    with server.client("device-1") as c, server.client("device-2") as other:
        assert _post(c, "/mup", mirror(T0 - 200)).headers["location"] == mup  # checked by the route
        for k in range(3):
            before = _count(server, TelemetryReading)
            with statements(server) as sql:
                r = _post(c, "/mup", mirror(T0 - 190 + k))
            assert (r.status_code, r.headers["location"]) == (201, mup), r.text
            assert _count(server, TelemetryReading) == before + 1  # committed when answered
            assert _reads(sql) == [], "an unchanged mirror re-post read the store"

        before = _count(server, TelemetryReading)
        theirs = _post(other, "/mup", mirror(T0 - 100))
        assert theirs.status_code == 400 and "deviceLFDI" in theirs.text
        assert _count(server, TelemetryReading) == before

        changed = _post(c, "/mup", mirror(T0 - 90, role_flags=41))
        assert (changed.status_code, changed.headers["location"]) == (201, mup)
        assert b"<roleFlags>0041</roleFlags>" in c.get(mup).content  # hexBinary16 as rendered

        with running_operator_api(server.ctx) as api, api.client(OPERATOR) as op:
            assert op.delete(f"/sites/{site_id}/mirror-usage-points").status_code == 200
        before = _count(server, TelemetryReading)
        made_again = _post(c, "/mup", mirror(T0 - 80, role_flags=41))
        assert made_again.status_code == 201, made_again.text
        assert _count(server, MirrorUsagePoint) == 1 and _count(server, MirrorMeterReading) == 1
        assert _count(server, TelemetryReading) == before + 1  # (SQLite may give it the old id again)
        assert b"<roleFlags>0041</roleFlags>" in c.get(made_again.headers["location"]).content
