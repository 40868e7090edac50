"""Registration and access control: devices see only themselves, aggregators only their own devices."""

from __future__ import annotations

from gridshare.certs.identity import sfdi_from_lfdi
from tests.support.bodies import SEP_XML, connection_point, end_device
from tests.support.servers import RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


def test_device_registers_itself_and_sees_only_itself(server: RunningServer) -> None:
    d1, d2 = server.pki.client("device-1"), server.pki.client("device-2")
    loc1 = server.register("device-1")
    loc2 = server.register("device-2")
    assert loc1 != loc2
    with server.client("device-1") as c:
        edev = xml_ok(c.get(loc1))
        assert edev.findtext("s:lFDI", namespaces=NS) == d1.lfdi
        assert int(edev.findtext("s:sFDI", namespaces=NS)) == d1.sfdi
        listing = xml_ok(c.get("/edev", params={"l": 10}))
        assert listing.get("all") == "1"
        assert [e.findtext("s:lFDI", namespaces=NS) for e in listing] == [d1.lfdi]
        assert c.get(loc2).status_code == 404  # device-2's EndDevice does not exist for device-1
        dcap = xml_ok(c.get("/dcap"))  # SelfDevice is the server (2030.5 §8.4), never the client
        assert dcap.find("s:SelfDeviceLink", NS).get("href") not in (loc1, loc2)
    with server.client("device-2") as c:
        assert [e.findtext("s:lFDI", namespaces=NS) for e in xml_ok(c.get("/edev", params={"l": 10}))] == [
            d2.lfdi
        ]


def test_registering_twice_is_refused_and_names_the_existing_end_device(server: RunningServer) -> None:
    """CSIP-AUS S-ALL-51: a duplicate lFDI is a 4xx; Location points at the EndDevice that exists."""
    href = server.register("device-1")
    me = server.pki.client("device-1")
    with server.client("device-1") as c:
        r = c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML)
        assert r.status_code == 409, r.text
        assert r.headers["location"] == href
        assert xml_ok(c.get("/edev", params={"l": 10})).get("all") == "1"


def test_device_cannot_register_someone_else(server: RunningServer) -> None:
    me, other = server.pki.client("device-1"), server.pki.client("device-2")
    with server.client("device-1") as c:
        r = c.post("/edev", content=end_device(other.sfdi, other.lfdi), headers=SEP_XML)
        assert r.status_code == 400 and "lFDI" in r.text
        r = c.post("/edev", content=end_device(other.sfdi), headers=SEP_XML)
        assert r.status_code == 400 and "sFDI" in r.text
        r = c.post(
            "/edev", content=end_device(me.sfdi + 1 if me.sfdi % 10 != 9 else me.sfdi - 1), headers=SEP_XML
        )
        assert r.status_code == 400 and "check digit" in r.text
        assert xml_ok(c.get("/edev")).get("all") == "0"


def test_aggregator_registers_devices_and_sees_them_with_its_own_end_device(server: RunningServer) -> None:
    agg = server.pki.client("aggregator-1")
    lfdis = ["A" * 39 + "1", "B" * 39 + "2"]
    with server.client("aggregator-1") as c:
        for lfdi in lfdis:
            r = c.post("/edev", content=end_device(sfdi_from_lfdi(lfdi), lfdi), headers=SEP_XML)
            assert r.status_code == 201, r.text
        listing = xml_ok(c.get("/edev", params={"l": 10}))
        assert listing.get("all") == "3"
        hrefs = [e.get("href") for e in listing]
        assert hrefs[0] == "/edev/0"
        assert sorted(e.findtext("s:lFDI", namespaces=NS) for e in listing) == sorted([agg.lfdi, *lfdis])
        own = xml_ok(c.get("/edev/0"))
        assert own.findtext("s:lFDI", namespaces=NS) == agg.lfdi
        # an aggregator must name the device and keep lFDI and sFDI consistent
        r = c.post("/edev", content=end_device(sfdi_from_lfdi(lfdis[0])), headers=SEP_XML)
        assert r.status_code == 400
        wrong_sfdi = sfdi_from_lfdi(lfdis[1])
        r = c.post("/edev", content=end_device(wrong_sfdi, "C" * 40), headers=SEP_XML)
        assert r.status_code == 400 and "derived" in r.text
    with server.client("aggregator-2") as c:
        assert xml_ok(c.get("/edev", params={"l": 10})).get("all") == "1"  # only its own /edev/0
        for href in hrefs[1:]:
            assert c.get(href).status_code == 404
    with server.client("device-1") as c:
        for href in hrefs[1:]:
            assert c.get(href).status_code == 404


def test_registration_pin_and_connection_point(server: RunningServer) -> None:
    loc = server.register("device-1")
    with server.client("device-1") as c:
        edev = xml_ok(c.get(loc))
        rg = xml_ok(c.get(edev.find("s:RegistrationLink", NS).get("href")))
        assert rg.findtext("s:pIN", namespaces=NS) == str(server.ctx.settings.default_registration_pin)
        cp_href = edev.find("c:ConnectionPointLink", NS).get("href")
        assert c.put(cp_href, content=connection_point("4102345678"), headers=SEP_XML).status_code == 204
        cp = xml_ok(c.get(cp_href))
        assert cp.findtext("c:connectionPointId", namespaces=NS) == "4102345678"
        r = c.put(cp_href, content=connection_point("NMI-WITH-DASH"), headers=SEP_XML)
        assert r.status_code == 400
        assert xml_ok(c.get(cp_href)).findtext("c:connectionPointId", namespaces=NS) == "4102345678"
    with server.client("device-2") as c:
        assert c.put(cp_href, content=connection_point("9999999999"), headers=SEP_XML).status_code == 404
