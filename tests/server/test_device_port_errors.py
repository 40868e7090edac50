"""Schema-valid oddities get a 4xx with a reason, never a 5xx; device clocks are checked at the door.

Each body here is valid against the 2030.5 + CSIP-AUS schemas (issue 11, defect 4) or carries a time
the engine would otherwise trust (defect 2): the server answers with a 2030.5 Error naming the problem,
or accepts what it can use, and stores nothing it refused.
"""

from __future__ import annotations

import httpx
from lxml import etree
from sqlalchemy import func, select

from gridshare.certs.identity import sfdi_from_lfdi
from gridshare.server.wire.xmlio import schema
from gridshare.store.models import Der, MirrorMeterReading, Site, TelemetryReading
from tests.support.bodies import CSIP, NS, SEP_XML, end_device, meter_reading, mirror_usage_point
from tests.support.servers import T0, RunningServer, xml_ok

MUP, MMR = "0A1B2C3D4E5F60718293A4B5C6D7E8F9", "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
INT32_OVER = 2**31  # one past PostgreSQL's integer


def _valid(body: bytes) -> bytes:
    """The body, after checking it really is schema-valid (so a refusal is the server's own decision)."""
    assert schema().validate(etree.fromstring(body)), schema().error_log.last_error
    return body


def _assert_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert etree.fromstring(r.content).tag == "{urn:ieee:std:2030.5:ns}Error"
    for word in words:
        assert word in r.text, r.text


def _count(server: RunningServer, model: type) -> int:
    with server.ctx.sessions() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _mup(server: RunningServer, name: str = "device-1") -> str:
    me = server.pki.client(name)
    with server.client(name) as c:
        r = c.post("/mup", content=mirror_usage_point(MUP, me.lfdi, MMR, T0 - 300, 1200), headers=SEP_XML)
    assert r.status_code == 201, r.text
    return r.headers["location"]


def test_an_empty_mrid_is_refused_not_a_crash(server: RunningServer) -> None:
    server.register("device-1")
    location = _mup(server)
    readings = _count(server, TelemetryReading)
    empty_mmr = _valid(meter_reading("", T0, 5))
    with server.client("device-1") as c:
        _assert_error(c.post(location, content=empty_mmr, headers=SEP_XML), 400, "mRID")
        lst = _valid(
            f'<MirrorMeterReadingList {NS} all="1" results="1">'.encode()
            + meter_reading("", T0, 5).replace(f" {NS}".encode(), b"")
            + b"</MirrorMeterReadingList>"
        )
        _assert_error(c.post(location, content=lst, headers=SEP_XML), 400, "mRID")
        me = server.pki.client("device-1")
        empty_mup = _valid(mirror_usage_point("", me.lfdi, MMR, T0, 5))
        _assert_error(c.post("/mup", content=empty_mup, headers=SEP_XML), 400, "mRID")
    assert _count(server, TelemetryReading) == readings


def test_blank_hex_fields_are_absent_values(server: RunningServer) -> None:
    """`deviceCategory`, `roleFlags`, `doeModesSupported`/`doeModesEnabled` may be empty hexBinary."""
    me = server.pki.client("device-1")
    with server.client("device-1") as c:
        for blank in ("", " "):
            body = _valid(end_device(me.sfdi, me.lfdi, category=blank))
            r = c.post("/edev", content=body, headers=SEP_XML)
            assert r.status_code in (201, 409), r.text  # registered (0), or already registered
        site = int(r.headers["location"].rsplit("/", 1)[1])
        mup = mirror_usage_point(MUP, me.lfdi, MMR, T0, 5).replace(
            b"<roleFlags>49</roleFlags>", b"<roleFlags> </roleFlags>"
        )
        assert c.post("/mup", content=_valid(mup), headers=SEP_XML).status_code == 201
        cap = _valid(
            f"<DERCapability {NS} {CSIP}><modesSupported>00500088</modesSupported><rtgMaxW><multiplier>0"
            f"</multiplier><value>5000</value></rtgMaxW><type>4</type><csipaus:doeModesSupported>"
            f"</csipaus:doeModesSupported></DERCapability>".encode()
        )
        assert c.put(f"/edev/{site}/der/1/dercap", content=cap, headers=SEP_XML).status_code == 204
        settings = _valid(
            f"<DERSettings {NS} {CSIP}><setGradW>27</setGradW><setMaxW><multiplier>0</multiplier>"
            f"<value>5000</value></setMaxW><updatedTime>{T0}</updatedTime><csipaus:doeModesEnabled> "
            f"</csipaus:doeModesEnabled></DERSettings>".encode()
        )
        assert c.put(f"/edev/{site}/der/1/derg", content=settings, headers=SEP_XML).status_code == 204
        # the widest bitmap the schema allows (HexBinary8)
        full = cap.replace(b"<csipaus:doeModesSupported>", b"<csipaus:doeModesSupported>FF")
        assert c.put(f"/edev/{site}/der/1/dercap", content=_valid(full), headers=SEP_XML).status_code == 204
    with server.ctx.sessions() as s:
        assert s.execute(select(Site.device_category)).scalar_one() == 0
        der = s.execute(select(Der)).scalar_one()
        assert der.doe_modes_supported == 0xFF and der.doe_modes_enabled is None and der.rtg_max_w == 5000


def test_an_aggregator_registering_a_short_lfdi_is_told_why(server: RunningServer) -> None:
    with server.client("aggregator-1") as c:
        for lfdi in ("AB", "A" * 38, "0123456789ABCDEF0123"):
            body = _valid(end_device(sfdi_from_lfdi("A" * 40), lfdi))
            _assert_error(c.post("/edev", content=body, headers=SEP_XML), 400, "lFDI")
        good = "A" * 39 + "1"
        assert (
            c.post("/edev", content=end_device(sfdi_from_lfdi(good), good), headers=SEP_XML).status_code
            == 201
        )
    assert _count(server, Site) == 1


HUGE_ID_PATHS = [
    f"/edev/{INT32_OVER}",
    f"/edev/{INT32_OVER}/cp",
    f"/edev/{INT32_OVER}/der/1/ders",
    f"/edev/1/der/{INT32_OVER}",
    f"/edev/1/derp/{INT32_OVER}/derc",
    f"/edev/1/fsa/{INT32_OVER}",
    f"/mup/{INT32_OVER}",
    f"/rsps/1/rsp/{INT32_OVER}",
    f"/edev/1/lel/{INT32_OVER}",
    f"/edev/0/sub/{INT32_OVER}",
    "/edev/99999999999999999999999",
    "/edev/-1",
]


def test_path_ids_beyond_the_database_integer_name_nothing(server: RunningServer) -> None:
    server.register("device-1")
    with server.client("device-1") as c, server.client("aggregator-1") as agg:
        for path in HUGE_ID_PATHS:
            for client in (c, agg):
                _assert_error(client.get(path), 404)
            _assert_error(c.delete(path), 404 if path.startswith(("/mup", "/edev/0/sub")) else 405)
            if path.endswith("/cp"):
                _assert_error(c.put(path, content=b"<x/>", headers=SEP_XML), 404)


# --- device times --------------------------------------------------------------------------------------


READING_STARTS = [
    (T0 - 60, True),
    (T0 + 299, True),  # within the clock-skew allowance
    (T0 + 3600, False),
    (T0 + 10 * 365 * 86400, False),  # makes a dead feed look fresh for ten years
    (2**63 - 1, False),  # schema-valid TimeType, and the end of date arithmetic
    (0, False),  # a device clock reset to 1970
    (T0 - 8 * 86400, False),
    (-(2**63), False),
]


def test_reading_times_are_checked_against_the_servers_clock(server: RunningServer) -> None:
    server.register("device-1")
    location = _mup(server)
    for start_s, accepted in READING_STARTS:
        _post_readings_at(server, location, start_s, accepted)


def _post_readings_at(server: RunningServer, location: str, start_s: int, accepted: bool) -> None:
    readings = _count(server, TelemetryReading)
    with server.client("device-1") as c:
        r = c.post(location, content=_valid(meter_reading(MMR, start_s, 7)), headers=SEP_XML)
        in_set = _valid(
            f"<MirrorMeterReading {NS}><mRID>{MMR}</mRID><MirrorReadingSet><mRID>AA01</mRID><timePeriod>"
            f"<duration>300</duration><start>{start_s}</start></timePeriod><Reading><value>9</value></Reading>"
            f"</MirrorReadingSet></MirrorMeterReading>".encode()
        )
        r_set = c.post(location, content=in_set, headers=SEP_XML)
    if accepted:
        assert (r.status_code, r_set.status_code) == (201, 201), (start_s, r.text, r_set.text)
        assert _count(server, TelemetryReading) == readings + 2
    else:
        _assert_error(r, 400, "Reading/timePeriod/start", "server's clock")
        _assert_error(r_set, 400, "MirrorReadingSet/timePeriod/start")
        assert _count(server, TelemetryReading) == readings


def test_a_bad_reading_inside_a_new_mirror_usage_point_stores_none_of_it(server: RunningServer) -> None:
    server.register("device-1")
    me = server.pki.client("device-1")
    with server.client("device-1") as c:
        r = c.post("/mup", content=mirror_usage_point(MUP, me.lfdi, MMR, T0 + 86400, 5), headers=SEP_XML)
        _assert_error(r, 400, "ahead")
        assert xml_ok(c.get("/mup", params={"l": 5})).get("all") == "0"
    assert _count(server, MirrorMeterReading) == 0


def test_the_window_is_a_setting(server: RunningServer) -> None:
    server.ctx.settings.device_time_future_tolerance_s = 7200
    server.register("device-1")
    location = _mup(server)
    with server.client("device-1") as c:
        assert c.post(location, content=meter_reading(MMR, T0 + 3600, 7), headers=SEP_XML).status_code == 201
