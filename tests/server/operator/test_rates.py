"""Run-time poll and post rates seen by the device on its next request; read-only device-data views."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from gridshare.core.mrid import new_mrid
from tests.support.bodies import SEP_XML, log_event, mirror_usage_point
from tests.support.operator_api import (
    OPERATOR,
    VIEWER,
    OperatorApi,
    assert_field_error,
    register_device,
    running_operator_api,
)
from tests.support.servers import T0, RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns"}


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as running:
        yield running


def _poll_rate(server: RunningServer, path: str) -> int:
    with server.client("device-1") as device:
        r = device.get(path, params={"l": 5})
    assert r.status_code == 200, r.text
    return int(etree.fromstring(r.content).get("pollRate"))


def test_poll_and_post_rates_change_at_run_time(server: RunningServer, api: OperatorApi) -> None:
    me = server.pki.client("device-1")
    site_id = register_device(server, "device-1")
    with server.client("device-1") as device:
        r = device.post(
            "/mup", content=mirror_usage_point(new_mrid(0), me.lfdi, new_mrid(0), T0, 1234), headers=SEP_XML
        )
        assert r.status_code == 201, r.text
        mup_href = r.headers["location"]
    derp_list = f"/edev/{site_id}/fsa/1/derp"
    assert _poll_rate(server, derp_list) == 60
    with api.client(OPERATOR) as op:
        assert_field_error(op.patch("/rates", json={"poll_rates_s": {"derp": 0}}), "derp")
        assert_field_error(op.patch("/rates", json={"poll_rates_s": {"xyz": 10}}), "xyz", "[key]")
        assert_field_error(op.patch("/rates", json={"mup_post_rate_s": -1}), "mup_post_rate_s")
        r = op.patch("/rates", json={"poll_rates_s": {"derp": 17, "dcap": 45}, "mup_post_rate_s": 7})
        assert r.status_code == 200, r.text
        assert r.json()["poll_rates_s"]["derp"] == 17 and r.json()["overridden"] == [
            "dcap",
            "derp",
            "mup_post_rate_s",
        ]
    assert _poll_rate(server, derp_list) == 17
    assert _poll_rate(server, "/dcap") == 45
    assert _poll_rate(server, "/edev") == 300
    with server.client("device-1") as device:
        mup = etree.fromstring(device.get(mup_href).content)
    assert mup.findtext("s:postRate", namespaces=NS) == "7"
    with api.client(OPERATOR) as op:
        r = op.patch("/rates", json={"poll_rates_s": {"derp": None}})
        assert r.json()["poll_rates_s"]["derp"] == 60 and "derp" not in r.json()["overridden"]
    assert _poll_rate(server, derp_list) == 60


def test_device_data_views(server: RunningServer, api: OperatorApi) -> None:
    me = server.pki.client("device-1")
    site_id = register_device(server, "device-1")
    with server.client("device-1") as device:
        body = mirror_usage_point(new_mrid(0), me.lfdi, "AB" * 16, T0 - 300, 4321)
        assert device.post("/mup", content=body, headers=SEP_XML).status_code == 201
        assert (
            device.post(f"/edev/{site_id}/lel", content=log_event(T0, 5), headers=SEP_XML).status_code == 201
        )
    with api.client(VIEWER) as viewer:
        readings = viewer.get(f"/sites/{site_id}/telemetry").json()
        assert readings["total"] == 1
        reading = readings["items"][0]
        assert (reading["value"], reading["time_s"], reading["reading_mrid"]) == (4321, T0 - 300, "AB" * 16)
        assert reading["reading_type"]["uom"] == 38
        assert viewer.get(f"/sites/{site_id}/telemetry", params={"since_s": T0}).json()["total"] == 0
        events = viewer.get(f"/sites/{site_id}/log-events").json()
        assert events["total"] == 1 and events["items"][0]["log_event_code"] == 5
        assert viewer.get(f"/sites/{site_id}/responses").json() == {"total": 0, "start": 0, "items": []}
        assert viewer.get("/sites/999/telemetry").status_code == 404
        assert_field_error(viewer.get("/sites", params={"limit": 0}), "limit")
