"""The four DER documents a client keeps current: found by following links, stored as sent, private to it."""

from __future__ import annotations

import pytest
from lxml import etree
from sqlalchemy import select

from gridshare.store.models import Der, Site
from tests.support.bodies import SEP_XML, der_availability, der_capability, der_settings, der_status
from tests.support.engine import der_links
from tests.support.servers import T0, RunningServer, xml_ok

SEP = "urn:ieee:std:2030.5:ns"
NS = {"s": SEP, "c": "https://csipaus.org/ns"}


def _power(el: etree._Element, path: str) -> tuple[int, int]:
    node = el.find(path, NS)
    assert node is not None, f"{path} missing from {etree.tostring(el)!r}"
    return int(node.findtext("s:value", namespaces=NS)), int(node.findtext("s:multiplier", namespaces=NS))


def _der_row(server: RunningServer, lfdi: str) -> Der:
    with server.ctx.sessions() as s:
        return s.execute(select(Der).join(Site, Site.id == Der.site_id).where(Site.lfdi == lfdi)).scalar_one()


def test_der_documents_are_stored_and_returned_as_sent(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    loc = server.register("device-1")
    rtg_value, rtg_multiplier = 66, 2  # 6.6 kW, written the way a device with a 6.6 kW inverter might
    with server.client("device-1") as c:
        links = der_links(c, loc)
        assert len(set(links.values())) == 4
        for name, href in links.items():
            assert c.get(href).status_code == 404, f"{name} exists before the device sent it"
        sent = {
            "DERCapability": der_capability(rtg_value, rtg_multiplier),
            "DERSettings": der_settings(4600, T0 - 600),
            "DERStatus": der_status(T0 - 60),
            "DERAvailability": der_availability(T0 - 30, 3200),
        }
        for name, body in sent.items():
            r = c.put(links[name], content=body, headers=SEP_XML)
            assert r.status_code == 204, (name, r.text)

        got = {name: xml_ok(c.get(href)) for name, href in links.items()}
        for name, el in got.items():
            assert el.tag == f"{{{SEP}}}{name}"
            assert el.get("href") == links[name]
        cap = got["DERCapability"]
        assert _power(cap, "s:rtgMaxW") == (rtg_value, rtg_multiplier)
        assert cap.findtext("s:type", namespaces=NS) == "4"
        assert cap.findtext("s:modesSupported", namespaces=NS) == "00500088"
        assert cap.findtext("c:doeModesSupported", namespaces=NS) == "03"
        settings = got["DERSettings"]
        assert _power(settings, "s:setMaxW") == (4600, 0)
        assert settings.findtext("s:setGradW", namespaces=NS) == "27"
        assert settings.findtext("s:updatedTime", namespaces=NS) == str(T0 - 600)
        status = got["DERStatus"]
        assert status.findtext("s:readingTime", namespaces=NS) == str(T0 - 60)
        assert status.findtext("s:genConnectStatus/s:value", namespaces=NS) == "01"
        avail = got["DERAvailability"]
        assert avail.findtext("s:readingTime", namespaces=NS) == str(T0 - 30)
        assert _power(avail, "s:statWAvail") == (3200, 0)

        # a newer status replaces the old one
        server.clock.advance(60)
        assert c.put(links["DERStatus"], content=der_status(T0 + 30), headers=SEP_XML).status_code == 204
        assert xml_ok(c.get(links["DERStatus"])).findtext("s:readingTime", namespaces=NS) == str(T0 + 30)

    row = _der_row(server, me.lfdi)
    assert row.rtg_max_w == pytest.approx(rtg_value * 10**rtg_multiplier)
    assert row.set_max_w == pytest.approx(4600)


def test_refused_writes_leave_the_der_documents_alone(server: RunningServer) -> None:
    """A body with the wrong root, or any write by another device, changes nothing."""
    me = server.pki.client("device-1")
    loc = server.register("device-1")
    server.register("device-2")
    with server.client("device-1") as c:
        links = der_links(c, loc)
        cap_href, settings_href = links["DERCapability"], links["DERSettings"]
        r = c.put(cap_href, content=der_settings(4600, T0), headers=SEP_XML)
        assert r.status_code == 400 and r.text.strip()
        assert c.get(cap_href).status_code == 404

        assert c.put(cap_href, content=der_capability(5000), headers=SEP_XML).status_code == 204
        before = c.get(cap_href).content
        for wrong in (der_settings(9000, T0), der_status(T0), der_availability(T0, 9000)):
            r = c.put(cap_href, content=wrong, headers=SEP_XML)
            assert r.status_code == 400, r.text
            assert r.text.strip()
        r = c.put(settings_href, content=der_capability(9000), headers=SEP_XML)
        assert r.status_code == 400 and r.text.strip()
        assert c.get(settings_href).status_code == 404
        assert c.get(cap_href).content == before
        der_list_href = xml_ok(c.get(loc)).find("s:DERListLink", NS).get("href")

    with server.client("device-2") as other:
        assert other.get(der_list_href).status_code == 404
        for name, href in links.items():
            assert other.get(href).status_code == 404, f"device-2 read device-1's {name}"
        assert other.put(cap_href, content=der_capability(1), headers=SEP_XML).status_code == 404
        assert other.put(settings_href, content=der_settings(1, T0), headers=SEP_XML).status_code == 404
    with server.client("device-1") as c:
        assert c.get(cap_href).content == before
        assert c.get(settings_href).status_code == 404
    row = _der_row(server, me.lfdi)
    assert row.rtg_max_w == pytest.approx(5000)
    assert row.set_max_w is None
