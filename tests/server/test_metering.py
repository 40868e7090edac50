"""MirrorUsagePoints: a device mirrors its meter here, readings are kept, and nobody else sees them."""

from __future__ import annotations

from sqlalchemy import func, select

from gridshare.store.models import MirrorMeterReading, MirrorUsagePoint, TelemetryReading
from tests.support.bodies import NS as NS_DECL
from tests.support.bodies import SEP_XML, meter_reading, mirror_usage_point
from tests.support.servers import T0, RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns"}
MUP_MRID = "5A1E0000000000000000000000000001"
MMR_MRID = "5A1E0000000000000000000000000A01"


def _create_mup(server: RunningServer, name: str = "device-1") -> str:
    me = server.pki.client(name)
    with server.client(name) as c:
        r = c.post(
            "/mup", content=mirror_usage_point(MUP_MRID, me.lfdi, MMR_MRID, T0 - 300, 1234), headers=SEP_XML
        )
    assert r.status_code == 201, r.text
    return r.headers["location"]


def _stored_readings(server: RunningServer) -> set[tuple[str, int, int | None, int]]:
    """(MirrorMeterReading mRID, start, duration, value) of every reading the store kept."""
    with server.ctx.sessions() as s:
        rows = s.execute(
            select(
                MirrorMeterReading.mrid,
                TelemetryReading.time_s,
                TelemetryReading.duration_s,
                TelemetryReading.value,
            ).join(MirrorMeterReading, MirrorMeterReading.id == TelemetryReading.mmr_id)
        ).all()
    return {tuple(row) for row in rows}  # type: ignore[misc]


def _mup_count(server: RunningServer) -> int:
    with server.ctx.sessions() as s:
        return int(s.execute(select(func.count(MirrorUsagePoint.id))).scalar_one())


def test_mirror_usage_point_lifecycle(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    server.register("device-1")
    location = _create_mup(server)
    with server.client("device-1") as c:
        listing = xml_ok(c.get("/mup", params={"l": 10}))
        assert listing.get("all") == "1" and listing.get("results") == "1"
        assert [m.get("href") for m in listing.findall("s:MirrorUsagePoint", NS)] == [location]

        mup = xml_ok(c.get(location))
        assert mup.get("href") == location
        assert mup.findtext("s:mRID", namespaces=NS) == MUP_MRID
        assert mup.findtext("s:deviceLFDI", namespaces=NS) == me.lfdi
        assert int(mup.findtext("s:postRate", namespaces=NS)) > 0
        mmr = mup.find("s:MirrorMeterReading", NS)
        assert mmr.findtext("s:mRID", namespaces=NS) == MMR_MRID
        assert mmr.findtext("s:ReadingType/s:uom", namespaces=NS) == "38"

        r = c.post(location, content=meter_reading(MMR_MRID, T0, 1250), headers=SEP_XML)
        assert r.status_code == 201, r.text
        assert _stored_readings(server) == {(MMR_MRID, T0 - 300, 300, 1234), (MMR_MRID, T0, 300, 1250)}

        # the same mRID again (hexBinary, so case does not matter) updates the MUP rather than adding one
        again = mirror_usage_point(MUP_MRID.lower(), me.lfdi, MMR_MRID, T0 + 300, 1300)
        r = c.post("/mup", content=again, headers=SEP_XML)
        assert r.status_code == 201, r.text
        assert r.headers["location"] == location
        assert xml_ok(c.get("/mup", params={"l": 10})).get("all") == "1"
        assert _mup_count(server) == 1
        assert (MMR_MRID, T0 + 300, 300, 1300) in _stored_readings(server)

        assert c.delete(location).status_code == 204
        assert c.get(location).status_code == 404
        assert xml_ok(c.get("/mup", params={"l": 10})).get("all") == "0"
        assert c.post(location, content=meter_reading(MMR_MRID, T0, 1), headers=SEP_XML).status_code == 404
    assert _mup_count(server) == 0


def test_other_devices_can_neither_create_nor_see_nor_touch_a_mirror_usage_point(
    server: RunningServer,
) -> None:
    other = server.pki.client("device-2")
    server.register("device-1")
    server.register("device-2")
    with server.client("device-1") as c:
        body = mirror_usage_point(MUP_MRID, other.lfdi, MMR_MRID, T0, 1)
        r = c.post("/mup", content=body, headers=SEP_XML)
        assert r.status_code == 400 and r.text.strip()
        assert xml_ok(c.get("/mup", params={"l": 10})).get("all") == "0"
    assert _mup_count(server) == 0
    assert _stored_readings(server) == set()

    location = _create_mup(server)
    with server.client("device-2") as c:
        listing = xml_ok(c.get("/mup", params={"l": 10}))
        assert listing.get("all") == "0" and listing.findall("s:MirrorUsagePoint", NS) == []
        assert c.get(location).status_code == 404
        assert c.post(location, content=meter_reading(MMR_MRID, T0, 99), headers=SEP_XML).status_code == 404
        assert c.delete(location).status_code == 404
    with server.client("device-1") as c:
        assert xml_ok(c.get(location)).findtext("s:mRID", namespaces=NS) == MUP_MRID
    assert _mup_count(server) == 1
    assert _stored_readings(server) == {(MMR_MRID, T0 - 300, 300, 1234)}


def test_readings_that_cannot_be_stored_are_refused(server: RunningServer) -> None:
    server.register("device-1")
    location = _create_mup(server)
    new_mrid = "5A1E0000000000000000000000000B02"
    # timePeriod is optional in the schema, but a mirrored reading with no time cannot be stored
    no_time = (
        f"<MirrorMeterReading {NS_DECL}><mRID>{MMR_MRID}</mRID><Reading><value>5</value></Reading>"
        f"</MirrorMeterReading>"
    ).encode()
    refused = {
        "a new MirrorMeterReading without a ReadingType": meter_reading(new_mrid, T0, 77),
        "a Reading without a time": no_time,
    }
    with server.client("device-1") as c:
        for why, body in refused.items():
            r = c.post(location, content=body, headers=SEP_XML)
            assert r.status_code == 400, (why, r.status_code, r.text)
            assert r.text.strip(), why
        mup = xml_ok(c.get(location))
        assert [m.findtext("s:mRID", namespaces=NS) for m in mup.findall("s:MirrorMeterReading", NS)] == [
            MMR_MRID
        ]
    assert _stored_readings(server) == {(MMR_MRID, T0 - 300, 300, 1234)}


def test_longest_valid_reading_duration_does_not_break_posting(
    server: RunningServer,
) -> None:
    """timePeriod/duration is a UInt32: a reading with its largest value is kept or refused, never a 500."""
    server.register("device-1")
    location = _create_mup(server)
    longest = 2**32 - 1
    body = meter_reading(MMR_MRID, T0, 42).replace(
        b"<duration>300</duration>", f"<duration>{longest}</duration>".encode()
    )
    with server.client("device-1") as c:
        r = c.post(location, content=body, headers=SEP_XML)
    assert r.status_code in (201, 400), (r.status_code, r.text)
    if r.status_code == 400:
        assert r.text.strip()
        assert _stored_readings(server) == {(MMR_MRID, T0 - 300, 300, 1234)}
    else:
        assert _stored_readings(server) == {(MMR_MRID, T0 - 300, 300, 1234), (MMR_MRID, T0, longest, 42)}
