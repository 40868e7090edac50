"""DERControls and DefaultDERControls made through the operator API, read back by a device over mTLS."""

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
from tests.support.servers import T0, RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as running:
        yield running


def device_controls(server: RunningServer, site_id: int, program_id: int) -> dict[str, etree._Element]:
    with server.client("device-1") as device:
        r = device.get(f"/edev/{site_id}/derp/{program_id}/derc", params={"l": 10})
    assert r.status_code == 200, r.text
    return {c.findtext("s:mRID", namespaces=NS): c for c in etree.fromstring(r.content)}


def _power(control: etree._Element, name: str) -> tuple[int, int]:
    el = control.find(f"s:DERControlBase/c:{name}", NS)
    return int(el.findtext("s:multiplier", namespaces=NS)), int(el.findtext("s:value", namespaces=NS))


def test_controls_reach_the_device_and_cancel(server: RunningServer, api: OperatorApi) -> None:
    site_id = register_device(server, "device-1")
    program_id = first_program_id(api)
    base = f"/sites/{site_id}/programs/{program_id}/controls"
    with api.client(OPERATOR) as op:
        # 40 kW overflows Int16 as watts but not after the multiplier: published as 4000 x 10^1
        now = op.post(base, json={"duration_s": 1800, "export_limit_w": 40000, "ramp_tms_hundredths_s": 500})
        assert now.status_code == 201, now.text
        assert now.json()["status"] == "active" and now.json()["start_s"] == T0
        later = op.post(
            base,
            json={
                "start_s": T0 + 3600,
                "duration_s": 600,
                "import_limit_w": 2500,
                "generation_limit_w": 9000,
                "load_limit_w": 7000,
                "connect": True,
                "energize": False,
                "fixed_w_pct_hundredths": -5000,
                "randomize_start_s": 60,
                "response_required": 3,
            },
        )
        assert later.status_code == 201 and later.json()["status"] == "scheduled", later.text
    seen = device_controls(server, site_id, program_id)
    first, second = seen[now.json()["mrid"]], seen[later.json()["mrid"]]
    assert _power(first, "opModExpLimW") == (1, 4000)
    assert first.findtext("s:DERControlBase/s:rampTms", namespaces=NS) == "500"
    assert first.findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "1"
    assert _power(second, "opModImpLimW") == (0, 2500)
    assert _power(second, "opModGenLimW") == (0, 9000) and _power(second, "opModLoadLimW") == (0, 7000)
    assert second.findtext("s:DERControlBase/s:opModFixedW", namespaces=NS) == "-5000"
    assert second.findtext("s:DERControlBase/s:opModEnergize", namespaces=NS) == "false"
    assert (
        second.findtext("s:randomizeStart", namespaces=NS) == "60" and second.get("responseRequired") == "03"
    )

    with api.client(OPERATOR) as op:
        r = op.post(f"{base}/{now.json()['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert op.post(f"{base}/{now.json()['id']}/cancel").status_code == 409
        r = op.post(f"{base}/cancel-all", json={"randomized": True})
        assert r.json() == {"cancelled": [later.json()["id"]]}
        listed = op.get(base).json()
        assert listed["total"] == 2 and {c["status"] for c in listed["items"]} == {
            "cancelled",
            "cancelled_randomized",
        }
    seen = device_controls(server, site_id, program_id)
    assert seen[now.json()["mrid"]].findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "2"
    assert seen[later.json()["mrid"]].findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "3"
    actions = [e["action"] for e in api.client(OPERATOR).get("/audit").json()["items"]]
    assert actions == ["control.cancel_all", "control.cancel", "control.create", "control.create"]


def test_default_control_with_set_grad_w(server: RunningServer, api: OperatorApi) -> None:
    site_id = register_device(server, "device-1")
    program_id = first_program_id(api)
    with api.client(OPERATOR) as op:
        r = op.put(
            f"/programs/{program_id}/default-control",
            json={"export_limit_w": 5000, "set_grad_w_hundredths": 27},
        )
        assert r.status_code == 200, r.text
        assert_field_error(
            op.put(f"/programs/{program_id}/default-control", json={"set_grad_w_hundredths": 70000}),
            "set_grad_w_hundredths",
        )
        site_default = op.put(
            f"/sites/{site_id}/programs/{program_id}/default-control", json={"export_limit_w": 0}
        )
        assert site_default.status_code == 200, site_default.text
    with server.client("device-1") as device:
        dderc = etree.fromstring(device.get(f"/edev/{site_id}/derp/{program_id}/dderc").content)
        assert _power(dderc, "opModExpLimW") == (0, 0)
        with api.client(OPERATOR) as op:
            assert op.delete(f"/sites/{site_id}/programs/{program_id}/default-control").status_code == 204
        dderc = etree.fromstring(device.get(f"/edev/{site_id}/derp/{program_id}/dderc").content)
    assert _power(dderc, "opModExpLimW") == (0, 5000)
    assert dderc.findtext("s:setGradW", namespaces=NS) == "27"


def test_bad_controls_are_422_naming_the_field_and_write_nothing(
    server: RunningServer, api: OperatorApi
) -> None:
    site_id = register_device(server, "device-1")
    program_id = first_program_id(api)
    base = f"/sites/{site_id}/programs/{program_id}/controls"
    ok = {"duration_s": 600, "export_limit_w": 1000}
    bad: list[tuple[dict, tuple]] = [
        ({**ok, "export_limit_w": -1}, ("export_limit_w",)),
        ({**ok, "export_limit_w": 1e15}, ("export_limit_w",)),
        ({**ok, "import_limit_w": "lots"}, ("import_limit_w",)),
        ({**ok, "fixed_w_pct_hundredths": 20000}, ("fixed_w_pct_hundredths",)),
        ({**ok, "ramp_tms_hundredths_s": 65536}, ("ramp_tms_hundredths_s",)),
        ({**ok, "randomize_start_s": 3601}, ("randomize_start_s",)),
        ({**ok, "randomize_duration_s": -3601}, ("randomize_duration_s",)),
        ({**ok, "duration_s": 0}, ("duration_s",)),
        ({**ok, "duration_s": 2**31}, ("duration_s",)),
        ({**ok, "start_s": T0 - 3600}, ("start_s",)),  # it would have ended already
        ({**ok, "start_s": -5}, ("start_s",)),
        ({**ok, "response_required": 8}, ("response_required",)),
        ({**ok, "opModExpLimW": 5}, ("opModExpLimW",)),  # unknown fields are refused, not dropped
        ({"duration_s": 600}, ("body",)),  # nothing to control
        ({**ok, "description": "d" * 33}, ("description",)),
    ]
    with api.client(OPERATOR) as op:
        for body, loc in bad:
            assert_field_error(op.post(base, json=body), *loc)
        r = op.post(
            base,
            content=b'{"duration_s": 60, "export_limit_w": NaN}',
            headers={"content-type": "application/json"},
        )
        assert_field_error(r, "export_limit_w")
        assert (
            op.post(base, content=b"{not json", headers={"content-type": "application/json"}).status_code
            == 422
        )
        assert op.post(f"/sites/{site_id + 99}/programs/{program_id}/controls", json=ok).status_code == 404
        assert op.post(f"/sites/{site_id}/programs/{program_id + 99}/controls", json=ok).status_code == 404
        assert op.post(f"/sites/99999999999/programs/{program_id}/controls", json=ok).status_code == 422
        assert op.post(f"{base}/12345/cancel").status_code == 404
    assert api.control_count() == 0 and api.audit_count() == 0
    with server.client("device-1") as device:
        r = device.get(f"/edev/{site_id}/derp/{program_id}/derc", params={"l": 10})
    assert etree.fromstring(r.content).get("all") == "0"
