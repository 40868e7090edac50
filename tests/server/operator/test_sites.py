"""Sites, connection agreements, FSAs, programs and curves through the operator API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from tests.support.operator_api import (
    OPERATOR,
    OperatorApi,
    assert_field_error,
    first_program_id,
    register_device,
    running_operator_api,
)
from tests.support.servers import RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as running:
        yield running


def test_sites_nmi_enabled_and_post_rate_seen_by_the_device(server: RunningServer, api: OperatorApi) -> None:
    site_id = register_device(server, "device-1")
    other = server.pki.client("device-2")
    with api.client(OPERATOR) as op:
        assert_field_error(op.post("/sites", json={"lfdi": other.lfdi, "sfdi": other.sfdi + 1}), "sfdi")
        assert_field_error(op.post("/sites", json={"lfdi": "12AB"}), "lfdi")
        assert_field_error(
            op.post("/sites", json={"lfdi": other.lfdi, "registration_pin": 111111}), "registration_pin"
        )
        assert op.post("/sites", json={"lfdi": other.lfdi, "aggregator_id": 999}).status_code == 404
        created = op.post("/sites", json={"lfdi": other.lfdi.lower(), "nmi": "QB01234567"})
        assert created.status_code == 201, created.text
        assert created.json()["sfdi"] == other.sfdi and created.json()["lfdi"] == other.lfdi
        assert op.post("/sites", json={"lfdi": other.lfdi}).status_code == 409
        assert_field_error(op.patch(f"/sites/{site_id}", json={"nmi": "not an nmi!"}), "nmi")
        assert_field_error(op.patch(f"/sites/{site_id}", json={"enabled": None}), "enabled")
        assert_field_error(op.patch(f"/sites/{site_id}", json={"post_rate_s": 0}), "post_rate_s")
        r = op.patch(f"/sites/{site_id}", json={"nmi": "4102345678", "enabled": False, "post_rate_s": 30})
        assert r.status_code == 200 and r.json()["nmi"] == "4102345678", r.text
        assert op.patch("/sites/777", json={"enabled": True}).status_code == 404
        assert op.get("/sites").json()["total"] == 2
    with server.client("device-1") as device:
        edev = etree.fromstring(device.get(f"/edev/{site_id}").content)
        assert edev.findtext("s:enabled", namespaces=NS) == "false"
        assert edev.findtext("s:postRate", namespaces=NS) == "30"
        cp = etree.fromstring(device.get(f"/edev/{site_id}/cp").content)
        assert cp.findtext("c:connectionPointId", namespaces=NS) == "4102345678"
    with server.client("device-2") as device:
        # the operator-created EndDevice is the device's own: it finds it in its list
        listed = etree.fromstring(device.get("/edev", params={"l": 5}).content)
        assert listed.get("all") == "1"


def test_connection_agreements_are_validated(server: RunningServer, api: OperatorApi) -> None:
    site_id = register_device(server, "device-1")
    url = f"/sites/{site_id}/agreement"
    with api.client(OPERATOR) as op:
        assert op.get(url).status_code == 404
        cases = [
            ({"kind": "dynamic", "max_export_w": 5000, "export_floor_w": 6000}, ("export_floor_w",)),
            ({"kind": "dynamic", "import_floor_w": -1}, ("import_floor_w",)),
            ({"kind": "limited", "export_limit_w": 1000, "schedule": []}, ("schedule",)),
            ({"kind": "scheduled"}, ("schedule",)),
            (
                {"kind": "scheduled", "schedule": [{"month": 13, "hour": 0, "export_w": 1}]},
                ("schedule", 0, "month"),
            ),
            ({"kind": "scheduled", "schedule": [{"month": 1, "hour": 24}]}, ("schedule", 0, "hour")),
            (
                {"kind": "scheduled", "schedule": [{"month": 1, "hour": 1}, {"month": 1, "hour": 1}]},
                ("schedule",),
            ),
            (
                {
                    "kind": "scheduled",
                    "schedule": [{"month": 1 + i % 12, "hour": i % 24} for i in range(289)],
                },
                ("schedule",),
            ),
            ({"kind": "staggered", "staggered_export_w": 100}, ("staggered_until_s",)),
            ({"kind": "radial"}, ("kind",)),
        ]
        for body, loc in cases:
            assert_field_error(op.put(url, json=body), *loc)
        assert api.audit_count() == 0
        full_year = [
            {"month": m, "hour": h, "export_w": 1000.0 * (h % 3)} for m in range(1, 13) for h in range(24)
        ]
        r = op.put(url, json={"kind": "scheduled", "max_export_w": 5000, "schedule": full_year})
        assert r.status_code == 200 and len(r.json()["schedule"]) == 288, r.text
        r = op.put(
            url, json={"kind": "dynamic", "max_export_w": 5000, "export_floor_w": 1500, "queue_position": 3}
        )
        assert r.json()["schedule"] is None and r.json()["export_floor_w"] == 1500
        assert op.get(url).json()["kind"] == "dynamic"
        assert op.delete(url).status_code == 204
        assert op.get(url).status_code == 404


def test_fsas_programs_and_curves(server: RunningServer, api: OperatorApi) -> None:
    site_id = register_device(server, "device-1")
    seeded = first_program_id(api)
    with api.client(OPERATOR) as op:
        fsa = op.post("/fsas", json={"description": "flexible loads"}).json()
        assert_field_error(op.post("/programs", json={"fsa_id": fsa["id"], "primacy": 256}), "primacy")
        assert op.post("/programs", json={"fsa_id": 9999, "primacy": 2}).status_code == 404
        program = op.post("/programs", json={"fsa_id": fsa["id"], "primacy": 5, "description": "loads"})
        assert program.status_code == 201, program.text
        pid = program.json()["id"]
        r = op.patch(f"/programs/{pid}", json={"primacy": 0})
        assert r.json()["primacy"] == 0 and r.json()["version"] == 1
        assert op.get("/programs").json()["items"][0]["id"] == pid  # primacy order
        assert op.delete(f"/fsas/{fsa['id']}").status_code == 409
        assert_field_error(
            op.post(f"/programs/{seeded}/curves", json={"curve_type": 11, "points": [[240, 0], [220, 0]]}),
            "points",
        )
        assert_field_error(
            op.post(f"/programs/{seeded}/curves", json={"curve_type": 99, "points": [[1, 1]]}), "curve_type"
        )
        curve = op.post(
            f"/programs/{seeded}/curves", json={"curve_type": 12, "points": [[253, 100], [260, 20]]}
        )
        assert curve.status_code == 201, curve.text
        assert op.get(f"/programs/{seeded}/curves").json()["total"] == 1
        # every program links a DefaultDERControl from the moment it exists
        assert len(op.get(f"/programs/{pid}/default-controls").json()) == 1
    with server.client("device-1") as device:
        fsas = etree.fromstring(device.get(f"/edev/{site_id}/fsa", params={"l": 5}).content)
        assert fsas.get("all") == "2"
        dderc = device.get(f"/edev/{site_id}/derp/{pid}/dderc")
        assert dderc.status_code == 200
        curves = etree.fromstring(device.get(f"/edev/{site_id}/derp/{seeded}/dc", params={"l": 5}).content)
        assert curves.get("all") == "1"
    with api.client(OPERATOR) as op:
        assert op.delete(f"/programs/{seeded}/curves/{curve.json()['id']}").status_code == 204
        assert op.delete(f"/programs/{seeded}/curves/{curve.json()['id']}").status_code == 404
        assert op.delete(f"/programs/{pid}").status_code == 204
        assert op.delete(f"/fsas/{fsa['id']}").status_code == 204
        assert op.get(f"/programs/{pid}").status_code == 404
    with server.client("device-1") as device:
        fsas = etree.fromstring(device.get(f"/edev/{site_id}/fsa", params={"l": 5}).content)
        assert fsas.get("all") == "1"
        curves = etree.fromstring(device.get(f"/edev/{site_id}/derp/{seeded}/dc", params={"l": 5}).content)
        assert curves.get("all") == "0"
