"""Behaviour the CSIP-AUS conformance suite (cactus-client) checks, pinned here so it stays fixed.

Each test names the procedure that found the problem; tests/conformance/run.sh runs the suite itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from gridshare.server.routes.end_devices import nmi_checksum, valid_nmi
from tests.support.bodies import SEP_XML, connection_point, meter_reading, mirror_usage_point
from tests.support.operator_api import (
    OPERATOR,
    OperatorApi,
    first_program_id,
    register_device,
    running_operator_api,
)
from tests.support.servers import T0, RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as running:
        yield running


def _error_reason_code(response) -> int:  # type: ignore[no-untyped-def]
    assert response.headers["content-type"].startswith("application/sep+xml"), response.headers
    doc = etree.fromstring(response.content)
    assert etree.QName(doc).localname == "Error"
    return int(doc.findtext("s:reasonCode", namespaces=NS))


def test_errors_are_2030_5_error_documents(server: RunningServer) -> None:
    """S-ALL-05 and others (strict mode): a 4xx body must parse as an Error, not plain text."""
    with server.client("device-1") as c:  # the hook validates every sep+xml body against the schema
        r = c.get("/edev/12345")
        assert r.status_code == 404
        assert _error_reason_code(r) == 1
        assert "no such" in r.text  # the reason still reaches a person reading the body
        assert not r.content.startswith(b"<?xml")  # a decoded str with an encoding declaration won't parse
        r = c.get("/edev", params={"l": "x"})
        assert r.status_code == 400 and _error_reason_code(r) == 0


def test_newer_control_of_the_same_second_supersedes_the_older(
    server: RunningServer, api: OperatorApi
) -> None:
    """S-ALL-15/16: two active controls created in one second; the second written wins."""
    site_id = register_device(server, "device-1")
    program_id = first_program_id(api)
    base = f"/sites/{site_id}/programs/{program_id}/controls"
    with api.client(OPERATOR) as op:
        ids = []
        for energize in (True, False, True, False):  # several, so random mRIDs cannot pass by luck
            r = op.post(base, json={"duration_s": 600, "energize": energize})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        statuses = {c["id"]: c["status"] for c in op.get(base).json()["items"]}
    assert statuses == {ids[0]: "superseded", ids[1]: "superseded", ids[2]: "superseded", ids[3]: "active"}
    with server.client("device-1") as device:
        doc = xml_ok(device.get(f"/edev/{site_id}/derp/{program_id}/actderc", params={"l": 10}))
    assert [c.findtext("s:DERControlBase/s:opModEnergize", namespaces=NS) for c in doc] == ["false"]


def test_reading_list_without_counts_is_accepted(server: RunningServer) -> None:
    """S-ALL-07/47: a posted MirrorMeterReadingList may leave out `all` and `results`."""
    me = server.pki.client("device-1")
    server.register("device-1")
    mmr = "BB" * 16
    with server.client("device-1") as c:
        r = c.post("/mup", content=mirror_usage_point("AA" * 16, me.lfdi, mmr, T0 - 1000, 5), headers=SEP_XML)
        assert r.status_code == 201, r.text
        reading = meter_reading(mmr, T0 - 700, 7).decode().replace(' xmlns="urn:ieee:std:2030.5:ns"', "")
        body = f'<MirrorMeterReadingList xmlns="urn:ieee:std:2030.5:ns">{reading}</MirrorMeterReadingList>'
        r = c.post(r.headers["location"], content=body.encode(), headers=SEP_XML)
        assert r.status_code == 201, r.text


def test_meter_reading_mrid_of_another_device_is_refused(server: RunningServer) -> None:
    """S-ALL-05: a device cannot post into (or claim) a MirrorMeterReading mRID another device owns."""
    d1, d2 = server.pki.client("device-1"), server.pki.client("device-2")
    server.register("device-1")
    server.register("device-2")
    taken = "CC" * 16
    with server.client("device-2") as c:
        body = mirror_usage_point("DD" * 16, d2.lfdi, taken, T0 - 1000, 5)
        assert c.post("/mup", content=body, headers=SEP_XML).status_code == 201
    with server.client("device-1") as c:
        r = c.post(
            "/mup", content=mirror_usage_point("EE" * 16, d1.lfdi, taken, T0 - 1000, 5), headers=SEP_XML
        )
        assert r.status_code == 409, r.text
        assert xml_ok(c.get("/mup")).get("all") == "0"  # nothing half-created


def test_connection_point_put_gives_location_and_checks_the_nmi(server: RunningServer) -> None:
    """S-ALL-53 / S-OPT-02/03: PUT answers with Location; a malformed NMI is reasonCode 1."""
    loc = server.register("device-1")
    with server.client("device-1") as c:
        cp_href = xml_ok(c.get(loc)).find("c:ConnectionPointLink", NS).get("href")
        r = c.put(cp_href, content=connection_point("41020000002"), headers=SEP_XML)
        assert r.status_code == 204 and r.headers["location"] == cp_href
        for bad in ("NOTAVALIDID", "41020000003", "410200000", "4102-00000"):
            r = c.put(cp_href, content=connection_point(bad), headers=SEP_XML)
            assert r.status_code == 400, bad
            assert _error_reason_code(r) == 1, bad
        assert xml_ok(c.get(cp_href)).findtext("c:connectionPointId", namespaces=NS) == "41020000002"


def test_nmi_checksum() -> None:
    # AEMO examples as CSIP-AUS clients send them: ten characters and the checksum digit
    assert nmi_checksum("4102000000") == 2 and nmi_checksum("4102000002") == 6
    assert valid_nmi("41020000026") and valid_nmi("QB01234567") and not valid_nmi("41020000027")


def test_operator_deletes_a_site_and_its_mirrors(server: RunningServer, api: OperatorApi) -> None:
    """What the cactus admin plugin composes for ensure-end-device(registered=false) and
    ensure-mup-list-empty: the device sees its mirrors, then its EndDevice, go."""
    me = server.pki.client("device-1")
    site_id = register_device(server, "device-1")
    with server.client("device-1") as c:
        body = mirror_usage_point("AB" * 16, me.lfdi, "CD" * 16, T0 - 1000, 5)
        assert c.post("/mup", content=body, headers=SEP_XML).status_code == 201
    with api.client(OPERATOR) as op:
        mups = op.get(f"/sites/{site_id}/mirror-usage-points").json()
        assert [m["mrid"] for m in mups] == ["AB" * 16]
        r = op.delete(f"/sites/{site_id}/mirror-usage-points")
        assert r.status_code == 200 and r.json()["deleted"] == [mups[0]["id"]]
        with server.client("device-1") as c:
            assert xml_ok(c.get("/mup")).get("all") == "0"
        assert op.delete(f"/sites/{site_id}").status_code == 204
        assert op.get(f"/sites/{site_id}").status_code == 404
        assert op.delete(f"/sites/{site_id}").status_code == 404
        actions = [e["action"] for e in op.get("/audit").json()["items"]]
        assert "site.delete" in actions and "mup.delete_all" in actions
    with server.client("device-1") as c:
        assert xml_ok(c.get("/edev")).get("all") == "0"
    register_device(server, "device-1")  # open registration: it may register again
