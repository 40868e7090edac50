"""Metering for readers: what a device mirrors can be read back as UsagePoint -> MeterReading -> ...

IEEE 2030.5 §10.4 (Metering) over the data of §10.11 (Metering Mirror): a UsagePoint per mirror with the
isMirror role flag, MeterReadings with their ReadingType, newest Reading and ReadingSets (one per UTC
day, newest first), each ReadingList in time order; paged, scoped, subscribable. Every body the test
clients receive is validated against the 2030.5 + CSIP-AUS schemas (tests/conftest.py).
"""

from __future__ import annotations

import re

from lxml import etree

from tests.support import subscriptions as subs
from tests.support.bodies import NS as NS_DECL
from tests.support.bodies import SEP_XML
from tests.support.servers import T0, RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns"}
DAY = 86400
MUP_MRID = "0A1E0000000000000000000000000001"
POWER_MRID = "0A1E0000000000000000000000000A01"
ENERGY_MRID = "0A1E0000000000000000000000000B02"
# pytest finds fixtures by name in the module: reuse the real HTTP receiver and the notifier pump


def _reading(start_s: int, value: int, duration_s: int = 300) -> str:
    return (
        f"<Reading><timePeriod><duration>{duration_s}</duration><start>{start_s}</start></timePeriod>"
        f"<value>{value}</value></Reading>"
    )


def _reading_type(uom: int, power_of_ten: int, kind: int = 37, accumulation: int = 12) -> str:
    return (
        f"<ReadingType><accumulationBehaviour>{accumulation}</accumulationBehaviour><commodity>1</commodity>"
        f"<flowDirection>19</flowDirection><intervalLength>300</intervalLength><kind>{kind}</kind>"
        f"<phase>0</phase><powerOfTenMultiplier>{power_of_ten}</powerOfTenMultiplier><uom>{uom}</uom>"
        f"</ReadingType>"
    )


def _tagged(mrid: str, tag: str) -> str:
    """mRIDs are globally unique: a second site's mirror needs its own."""
    return tag + mrid[1:]


def _mup(lfdi: str, readings: str = "", power_of_ten: int = 0, tag: str = "0") -> bytes:
    """A site mirror (roleFlags 0A: premises aggregation point + DER; isMirror deliberately not set)."""
    return (
        f"<MirrorUsagePoint {NS_DECL}><mRID>{_tagged(MUP_MRID, tag)}</mRID>"
        f"<description>site meter</description>"
        f"<roleFlags>0A</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI>"
        f"<MirrorMeterReading><mRID>{_tagged(POWER_MRID, tag)}</mRID><description>net power</description>"
        f"{readings}{_reading_type(38, power_of_ten)}</MirrorMeterReading>"
        f"<MirrorMeterReading><mRID>{_tagged(ENERGY_MRID, tag)}</mRID>{_reading_type(72, 3, 12, 4)}"
        f"</MirrorMeterReading>"
        f"</MirrorUsagePoint>"
    ).encode()


def _post_power(c: object, mup: str, *readings: tuple[int, int], tag: str = "0") -> None:
    body = f"<MirrorMeterReading {NS_DECL}><mRID>{_tagged(POWER_MRID, tag)}</mRID>"
    body += "".join(
        f"<MirrorReadingSet><mRID>{POWER_MRID[:-4]}{i:04d}</mRID><timePeriod><duration>300</duration>"
        f"<start>{t}</start></timePeriod>{_reading(t, v)}</MirrorReadingSet>"
        for i, (t, v) in enumerate(readings)
    )
    r = c.post(mup, content=(body + "</MirrorMeterReading>").encode(), headers=SEP_XML)  # type: ignore[attr-defined]
    assert r.status_code == 201, r.text


def _mirror(server: RunningServer, name: str = "device-1", lfdi: str | None = None, tag: str = "0") -> str:
    """`name` mirrors its site meter with four power readings over two UTC days and one retry."""
    lfdi = lfdi or server.pki.client(name).lfdi
    with server.client(name) as c:
        r = c.post("/mup", content=_mup(lfdi, _reading(T0 - 600, 90), tag=tag), headers=SEP_XML)
        assert r.status_code == 201, r.text
        mup = r.headers["location"]
        _post_power(c, mup, (T0 - 300, 95), (T0, 100), (T0 + 300, 120), tag=tag)
        _post_power(c, mup, (T0, 110), tag=tag)  # the same interval again (a retry): the last one counts
    return mup


def _links(el: etree._Element) -> dict[str, tuple[str, str | None]]:
    return {etree.QName(c).localname: (c.get("href"), c.get("all")) for c in el if c.get("href")}


def _values(listing: etree._Element) -> list[tuple[int, int]]:
    return [
        (int(r.findtext("s:timePeriod/s:start", namespaces=NS)), int(r.findtext("s:value", namespaces=NS)))
        for r in listing.findall("s:Reading", NS)
    ]


def test_a_device_reads_back_its_mirror_through_the_metering_function_set(server: RunningServer) -> None:
    """Fails on the old code: /upt was a 404 and DeviceCapability had no UsagePointListLink."""
    me = server.pki.client("device-1")
    server.register("device-1")
    mup = _mirror(server)
    upt = mup.replace("/mup/", "/upt/")
    with server.client("device-1") as c:
        dcap = xml_ok(c.get("/dcap"))
        assert _links(dcap)["UsagePointListLink"] == ("/upt", "1")

        listing = xml_ok(c.get("/upt", params={"l": 10}))
        assert (listing.get("all"), listing.get("results"), listing.get("subscribable")) == ("1", "1", "1")
        [point] = listing.findall("s:UsagePoint", NS)
        assert point.get("href") == upt
        alone = xml_ok(c.get(upt))
        assert [(etree.QName(e).localname, e.text) for e in alone] == [
            (etree.QName(e).localname, e.text) for e in point
        ]
        assert point.findtext("s:mRID", namespaces=NS) == MUP_MRID
        assert int(point.findtext("s:roleFlags", namespaces=NS), 16) == 0x0A | 0x01  # isMirror added
        assert point.findtext("s:deviceLFDI", namespaces=NS) == me.lfdi
        mr_list_href, mr_count = _links(point)["MeterReadingListLink"]
        assert mr_count == "2"

        readings = xml_ok(c.get(mr_list_href, params={"l": 10}))
        # 2030.5 Table 39: MeterReadings by mRID descending
        assert [m.findtext("s:mRID", namespaces=NS) for m in readings.findall("s:MeterReading", NS)] == [
            ENERGY_MRID,
            POWER_MRID,
        ]
        energy, power = readings.findall("s:MeterReading", NS)
        assert "ReadingLink" not in _links(energy)  # nothing mirrored yet: no Reading to link
        assert _links(energy)["ReadingSetListLink"][1] == "0"

        links = _links(xml_ok(c.get(power.get("href"))))
        rt = xml_ok(c.get(links["ReadingTypeLink"][0]))
        assert [(etree.QName(f).localname, f.text) for f in rt] == [
            ("accumulationBehaviour", "12"),
            ("commodity", "1"),
            ("flowDirection", "19"),
            ("intervalLength", "300"),
            ("kind", "37"),
            ("phase", "0"),
            ("powerOfTenMultiplier", "0"),
            ("uom", "38"),
        ]
        latest = xml_ok(c.get(links["ReadingLink"][0]))
        assert latest.findtext("s:value", namespaces=NS) == "120"
        assert latest.findtext("s:timePeriod/s:start", namespaces=NS) == str(T0 + 300)

        set_list_href, set_count = links["ReadingSetListLink"]
        assert set_count == "2"
        sets = xml_ok(c.get(set_list_href, params={"l": 10}))
        starts = [
            int(s.findtext("s:timePeriod/s:start", namespaces=NS)) for s in sets.findall("s:ReadingSet", NS)
        ]
        assert starts == [T0, T0 - DAY]  # newest first
        by_start = dict(zip(starts, sets.findall("s:ReadingSet", NS), strict=True))
        today = xml_ok(c.get(_links(by_start[T0])["ReadingListLink"][0], params={"l": 10}))
        assert _values(today) == [(T0, 110), (T0 + 300, 120)]  # time order; the retry replaced 100
        assert _links(by_start[T0])["ReadingListLink"][1] == "2"
        yesterday = xml_ok(c.get(_links(by_start[T0 - DAY])["ReadingListLink"][0], params={"l": 10}))
        assert _values(yesterday) == [(T0 - 600, 90), (T0 - 300, 95)]
        for item in today.findall("s:Reading", NS):  # every Reading in a list is there at its own href
            single = xml_ok(c.get(item.get("href")))
            assert single.findtext("s:value", namespaces=NS) == item.findtext("s:value", namespaces=NS)

        # a ReadingSet is stable: same mRID on every read, 128 bits of hex
        one = xml_ok(c.get(by_start[T0].get("href")))
        assert one.findtext("s:mRID", namespaces=NS) == by_start[T0].findtext("s:mRID", namespaces=NS)
        assert re.fullmatch(r"[0-9A-F]{32}", one.findtext("s:mRID", namespaces=NS))


def test_metering_lists_page_like_every_other_list(server: RunningServer) -> None:
    server.register("device-1")
    upt = _mirror(server).replace("/mup/", "/upt/")
    with server.client("device-1") as c:
        power = xml_ok(c.get(f"{upt}/mr", params={"s": 1, "l": 1})).find("s:MeterReading", NS)
        assert power.findtext("s:mRID", namespaces=NS) == POWER_MRID
        rs = _links(power)["ReadingSetListLink"][0]
        first = xml_ok(c.get(rs))  # l defaults to 1
        assert (first.get("all"), first.get("results")) == ("2", "1")
        older = xml_ok(c.get(rs, params={"s": 1, "l": 1}))
        assert older.find("s:ReadingSet/s:timePeriod/s:start", NS).text == str(T0 - DAY)
        since = xml_ok(c.get(rs, params={"a": T0, "l": 10}))  # a: sets starting at or after it
        assert since.get("all") == "1" and since.find("s:ReadingSet/s:timePeriod/s:start", NS).text == str(T0)
        readings = f"{rs}/{T0}/r"
        assert _values(xml_ok(c.get(readings, params={"s": 1, "l": 5}))) == [(T0 + 300, 120)]
        assert _values(xml_ok(c.get(readings, params={"a": T0 + 1, "l": 5}))) == [(T0 + 300, 120)]
        assert xml_ok(c.get(readings, params={"s": 5, "l": 5})).get("results") == "0"
        assert c.get(readings, params={"l": "x"}).status_code == 400
        for href in ("/upt", upt, f"{upt}/mr", power.get("href"), rs, f"{rs}/{T0}", readings):
            head = c.head(href)
            assert head.status_code == 200 and head.content == b"", href
        # no readings that day, not a day boundary, not a reading of that day, out of range: all 404
        for href in (f"{rs}/{T0 + DAY}", f"{rs}/{T0 + 5}", f"{rs}/{T0 + DAY}/r", f"{rs}/{T0}/r/999999"):
            assert c.get(href).status_code == 404, href
        for href in (f"{upt}99999999999", f"{upt}/mr/abc", f"{rs}/{10**13}"):
            assert c.get(href).status_code == 404, href
        assert c.post(f"{upt}/mr", content=b"<x/>", headers=SEP_XML).status_code == 405


def test_readings_are_shown_in_the_units_of_the_current_reading_type(server: RunningServer) -> None:
    """A client that changes powerOfTenMultiplier: old readings are rescaled, never reinterpreted."""
    me = server.pki.client("device-1")
    server.register("device-1")
    with server.client("device-1") as c:
        r = c.post("/mup", content=_mup(me.lfdi, _reading(T0, 1234)), headers=SEP_XML)
        upt = r.headers["location"].replace("/mup/", "/upt/")
        r = c.post("/mup", content=_mup(me.lfdi, _reading(T0 + 300, 12500), power_of_ten=-1), headers=SEP_XML)
        assert r.status_code == 201, r.text
        power = xml_ok(c.get(f"{upt}/mr", params={"s": 1, "l": 1})).find("s:MeterReading", NS)
        rt = xml_ok(c.get(_links(power)["ReadingTypeLink"][0]))
        assert rt.findtext("s:powerOfTenMultiplier", namespaces=NS) == "-1"
        listing = xml_ok(c.get(f"{_links(power)['ReadingSetListLink'][0]}/{T0}/r", params={"l": 10}))
        assert _values(listing) == [(T0, 12340), (T0 + 300, 12500)]  # 1234 W is 12340 dW


def test_mirrors_are_read_only_by_their_own_site_or_its_aggregator(server: RunningServer) -> None:
    server.register("device-1")
    upt = _mirror(server).replace("/mup/", "/upt/")
    with server.client("device-1") as c:
        power = xml_ok(c.get(f"{upt}/mr", params={"s": 1, "l": 1})).find("s:MeterReading", NS)
    mr = power.get("href")
    hidden = [upt, f"{upt}/mr", mr, f"{mr}/rt", f"{mr}/r", f"{mr}/rs", f"{mr}/rs/{T0}", f"{mr}/rs/{T0}/r"]
    with server.client("device-1") as c:
        hidden.append(xml_ok(c.get(f"{mr}/rs/{T0}/r")).find("s:Reading", NS).get("href"))
    server.register("device-2")
    site = subs.aggregator_site(server)
    agg_upt = _mirror(server, "aggregator-1", subs.DEVICE_LFDI, tag="1").replace("/mup/", "/upt/")
    for name in ("device-2", "aggregator-1", "aggregator-2"):
        with server.client(name) as c:
            mine = xml_ok(c.get("/upt", params={"l": 10}))
            assert upt not in [p.get("href") for p in mine.findall("s:UsagePoint", NS)], name
            for href in hidden:
                assert c.get(href).status_code == 404, (name, href)
    with server.client("aggregator-1") as c:
        [point] = xml_ok(c.get("/upt", params={"l": 10})).findall("s:UsagePoint", NS)
        assert (
            point.get("href") == agg_upt and point.findtext("s:deviceLFDI", namespaces=NS) == subs.DEVICE_LFDI
        )
    with server.client("device-1") as c:
        [point] = xml_ok(c.get("/upt", params={"l": 10})).findall("s:UsagePoint", NS)
        assert point.get("href") == upt
    assert site > 0


def test_aggregator_subscribes_to_a_day_of_readings_and_to_its_usage_points(
    server: RunningServer, receiver: subs.Receiver, pump: subs.Pump
) -> None:
    subs.aggregator_site(server)
    mup = _mirror(server, "aggregator-1", subs.DEVICE_LFDI)
    upt = mup.replace("/mup/", "/upt/")
    with server.client("aggregator-1") as c:
        power = xml_ok(c.get(f"{upt}/mr", params={"s": 1, "l": 1})).find("s:MeterReading", NS)
    today = f"{power.get('href')}/rs/{T0}/r"
    subs.subscribe(server, today, receiver.url("/today"))
    subs.subscribe(server, "/upt", receiver.url("/upt"))
    subs.subscribe(server, f"{power.get('href')}/r", receiver.url("/latest"))
    assert pump() == 3  # each as it is right after subscribing
    assert pump() == 0

    server.clock.advance(300)  # readings may be dated at most 300 s ahead of the server's clock
    with server.client("aggregator-1") as c:  # a new reading: the day's list and the newest Reading change
        _post_power(c, mup, (T0 + 600, 130))
    assert pump() == 2
    note = receiver.at("/today")[-1].xml()
    resource = note.find("s:Resource", NS)
    assert resource.get(subs.XSI_TYPE) == "ReadingList"
    assert _values(resource)[-1] == (T0 + 600, 130)
    latest = receiver.at("/latest")[-1].xml().find("s:Resource", NS)
    assert latest.get(subs.XSI_TYPE) == "Reading" and latest.findtext("s:value", namespaces=NS) == "130"

    with server.client("aggregator-1") as c:  # the mirror goes: its readings are gone, the list is empty
        assert c.delete(mup).status_code == 204
    assert pump() == 3
    assert receiver.at("/today")[-1].xml().findtext("s:status", namespaces=NS) == "4"
    assert receiver.at("/latest")[-1].xml().findtext("s:status", namespaces=NS) == "4"
    assert receiver.at("/upt")[-1].xml().find("s:Resource", NS).get("all") == "0"


def test_devices_cannot_subscribe_to_metering_and_others_cannot_subscribe_to_yours(
    server: RunningServer, receiver: subs.Receiver
) -> None:
    server.register("device-1")
    upt = _mirror(server).replace("/mup/", "/upt/")
    body = subs.subscription_body(f"{upt}/mr", receiver.url("/x"))
    with server.client("device-1") as c:
        assert c.post("/edev/0/sub", content=body, headers=SEP_XML).status_code == 403
    with server.client("aggregator-1") as c:
        r = c.post("/edev/0/sub", content=body, headers=SEP_XML)
        assert r.status_code == 400 and "can see" in r.text
