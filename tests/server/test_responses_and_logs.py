"""Device Responses to DERControls (POSTed to the control's replyTo) and device LogEvents."""

from __future__ import annotations

import httpx
from lxml import etree

from gridshare.core.mrid import new_mrid
from tests.support.bodies import SEP_XML, log_event, response
from tests.support.engine import control_for_site
from tests.support.servers import T0, RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns"}


def _find_control(c: httpx.Client, edev_href: str, mrid: str) -> etree._Element:
    """Walk EndDevice -> FSA list -> FSA -> DERProgram list -> DERControlList and find the control."""
    edev = xml_ok(c.get(edev_href))
    fsa_list = xml_ok(c.get(edev.find("s:FunctionSetAssignmentsListLink", NS).get("href"), params={"l": 10}))
    for fsa in fsa_list.findall("s:FunctionSetAssignments", NS):
        programs = xml_ok(c.get(fsa.find("s:DERProgramListLink", NS).get("href"), params={"l": 10}))
        for program in programs.findall("s:DERProgram", NS):
            controls = xml_ok(c.get(program.find("s:DERControlListLink", NS).get("href"), params={"l": 10}))
            for control in controls.findall("s:DERControl", NS):
                if control.findtext("s:mRID", namespaces=NS) == mrid:
                    return control
    raise AssertionError(f"DERControl {mrid} not found by following links from {edev_href}")


def test_device_responds_to_its_control(server: RunningServer) -> None:
    me, other = server.pki.client("device-1"), server.pki.client("device-2")
    loc = server.register("device-1")
    server.register("device-2")
    mrid = control_for_site(server, me.lfdi)
    with server.client("device-1") as c:
        reply_to = _find_control(c, loc, mrid).get("replyTo")
        assert reply_to
        refused = {
            "unknown subject": response(new_mrid(0), me.lfdi, 1, T0),
            "another device's lFDI": response(mrid, other.lfdi, 1, T0),
            "status 200 is not a DERControl response status": response(mrid, me.lfdi, 200, T0),
            "status 15 is reserved (S-ALL-57)": response(mrid, me.lfdi, 15, T0),
            "status 0 is reserved": response(mrid, me.lfdi, 0, T0),
        }
        for why, body in refused.items():
            r = c.post(reply_to, content=body, headers=SEP_XML)
            assert r.status_code == 400, (why, r.status_code, r.text)
            assert r.text.strip(), why
    with server.client("device-2") as c:
        for lfdi in (other.lfdi, me.lfdi):
            r = c.post(reply_to, content=response(mrid, lfdi, 1, T0), headers=SEP_XML)
            assert r.status_code == 400, (lfdi, r.status_code, r.text)
            assert r.text.strip()

    with server.client("device-1") as c:
        assert xml_ok(c.get(reply_to, params={"l": 10})).get("all") == "0"
        r = c.post(reply_to, content=response(mrid, me.lfdi, 1, T0 + 5), headers=SEP_XML)
        assert r.status_code == 201, r.text
        location = r.headers["location"]
        got = xml_ok(c.get(location))
        assert got.get("href") == location
        assert got.findtext("s:subject", namespaces=NS) == mrid
        assert got.findtext("s:endDeviceLFDI", namespaces=NS) == me.lfdi
        assert got.findtext("s:status", namespaces=NS) == "1"
        assert got.findtext("s:createdDateTime", namespaces=NS) == str(T0 + 5)
        listing = xml_ok(c.get(reply_to, params={"l": 10}))
        assert listing.get("all") == "1" and listing.get("results") == "1"
        [item] = listing.findall("s:Response", NS)
        assert item.get("href") == location
        assert item.findtext("s:subject", namespaces=NS) == mrid
    with server.client("device-2") as c:
        assert xml_ok(c.get(reply_to, params={"l": 10})).get("all") == "0"
        assert c.get(location).status_code == 404


def test_log_events_are_listed_for_their_device_only(server: RunningServer) -> None:
    loc = server.register("device-1")
    server.register("device-2")
    with server.client("device-1") as c:
        lel = xml_ok(c.get(loc)).find("s:LogEventListLink", NS).get("href")
        assert xml_ok(c.get(lel, params={"l": 10})).get("all") == "0"
        r = c.post(lel, content=log_event(T0 - 20, 7), headers=SEP_XML)
        assert r.status_code == 201, r.text
        location = r.headers["location"]
        listing = xml_ok(c.get(lel, params={"l": 10}))
        assert listing.get("all") == "1" and listing.get("results") == "1"
        [event] = listing.findall("s:LogEvent", NS)
        assert event.get("href") == location
        assert event.findtext("s:logEventCode", namespaces=NS) == "7"
        assert event.findtext("s:createdDateTime", namespaces=NS) == str(T0 - 20)
        assert xml_ok(c.get(location)).findtext("s:logEventCode", namespaces=NS) == "7"
    with server.client("device-2") as c:
        assert c.get(lel, params={"l": 10}).status_code == 404
        assert c.get(location).status_code == 404
        assert c.post(lel, content=log_event(T0, 9), headers=SEP_XML).status_code == 404
    with server.client("device-1") as c:
        assert xml_ok(c.get(lel, params={"l": 10})).get("all") == "1"
