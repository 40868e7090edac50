"""Operators load the network, change ratings and derate assets; devices see the envelopes follow."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from lxml import etree
from sqlalchemy import select

from gridshare.process.demo import DEMO_FILE, seed_demo
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.models import EnvelopeSetRecord, NetworkModel, Site
from gridshare.store.publication.network_docs import json_document
from tests.support.operator_api import VIEWER, OperatorApi, running_operator_api
from tests.support.servers import RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    with running_operator_api(server.ctx) as running:
        yield running


def _export_limits(server: RunningServer) -> list[float]:
    me = server.pki.client("device-1")
    with server.ctx.sessions() as s:
        site = s.execute(select(Site).where(Site.lfdi == me.lfdi)).scalar_one()
    with server.client("device-1") as c:
        root = etree.fromstring(c.get(f"/edev/{site.id}/derp/1/derc", params={"l": 100}).content)
    out = []
    for ctl in root:
        if ctl.findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "4":
            continue
        p = ctl.find("s:DERControlBase/c:opModExpLimW", NS)
        out.append(
            int(p.findtext("s:value", namespaces=NS)) * 10 ** int(p.findtext("s:multiplier", namespaces=NS))
        )
    return out


def test_load_network_as_yaml_and_read_it_back(api: OperatorApi) -> None:
    with api.client() as c:
        r = c.put("/network", content=DEMO_FILE.read_bytes(), headers={"content-type": "application/yaml"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["sites"] == 30 and body["name"] == "demo-feeder"
        zone = next(a for a in body["assets"] if a["name"] == "zone-tx")
        assert zone["rating_source"] == "dominion/12-16-20"
        assert c.get("/network").json()["id"] == body["id"]
    with api.client(VIEWER) as c:
        assert c.get("/network").status_code == 200
        assert (
            c.put("/network", content=b"{}", headers={"content-type": "application/json"}).status_code == 403
        )


def test_a_bad_network_is_refused_naming_the_field_and_changes_nothing(api: OperatorApi) -> None:
    doc = json_document(yaml.safe_load(DEMO_FILE.read_text()))
    bad_rating = json_document(doc)
    bad_rating["network"]["branches"][3]["rating"] = "dominion/no-such-transformer"
    bad_node = json_document(doc)
    bad_node["sites"][2]["node"] = "lv-99"
    bad_number = json_document(doc)
    bad_number["sites"][5]["max_export_kw"] = "lots"
    before = api.audit_count()
    with api.client() as c:
        r = c.put("/network", json=bad_rating)
        assert r.status_code == 422
        assert [e["loc"] for e in r.json()["detail"]] == [["body", "network", "branches", 3, "rating"]]
        for bad, loc in (
            (bad_node, ["body", "sites", 2, "node"]),
            (bad_number, ["body", "sites", 5, "max_export_kw"]),
        ):
            r = c.put("/network", json=bad)
            assert r.status_code == 422
            assert loc in [e["loc"] for e in r.json()["detail"]]
        assert (
            c.put(
                "/network", content=b"name: [unclosed", headers={"content-type": "application/yaml"}
            ).status_code
            == 422
        )
        assert c.put("/network", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    with api.ctx.sessions() as s:
        assert s.execute(select(NetworkModel)).first() is None
    assert api.audit_count() == before


def test_a_derate_that_would_never_apply_is_refused_naming_the_field(
    server: RunningServer, api: OperatorApi
) -> None:
    """A factor of 1 changes nothing and an end already past never starts: both are operator mistakes."""
    seed_demo(server.ctx, server.pki)
    now_s = server.ctx.now_s()
    before = api.audit_count()
    with api.client() as c:
        for body, field, words in (
            ({"asset": "f2-cd", "factor": 1.0}, "factor", "less than 1"),
            ({"asset": "f2-cd", "factor": 0.5, "until_s": now_s - 60}, "until_s", "never apply"),
            ({"asset": "f2-cd", "factor": 0.5, "until_s": now_s}, "until_s", "never apply"),
            (
                {"asset": "f2-cd", "factor": 0.0, "from_s": now_s - 7200, "until_s": now_s - 3600},
                "until_s",
                "never apply",
            ),
        ):
            r = c.post("/derates", json=body)
            assert r.status_code == 422, (body, r.text)
            (error,) = r.json()["detail"]
            assert error["loc"] == ["body", field] and words in error["msg"], error
        assert c.get("/derates").json()["total"] == 0
        # still accepted: a derate that is running, or one that starts later
        ok = c.post("/derates", json={"asset": "f2-cd", "factor": 0.99, "until_s": now_s + 60})
        assert ok.status_code == 201, ok.text
        later = {"asset": "f2-cd", "factor": 0.0, "from_s": now_s + 3600, "until_s": now_s + 7200}
        assert c.post("/derates", json=later).status_code == 201
    assert api.audit_count() == before + 2


def test_derate_and_outage_reach_devices_and_clearing_restores(
    server: RunningServer, api: OperatorApi
) -> None:
    seed_demo(server.ctx, server.pki)
    engine = Recomputer(server.ctx)
    engine.run_once("start")
    normal = _export_limits(server)
    with api.client() as c:
        net = c.get("/network").json()
        # device-1 sits behind one distribution transformer of the demo feeder
        with server.ctx.sessions() as s:
            nmi = s.execute(
                select(Site.nmi).where(Site.lfdi == server.pki.client("device-1").lfdi)
            ).scalar_one()
        site = next(x for x in yaml.safe_load(DEMO_FILE.read_text())["sites"] if x.get("nmi") == nmi)
        asset = next(a["name"] for a in net["assets"] if a["to_node"] == site["node"])
        assert c.post("/derates", json={"asset": "no-such-asset", "factor": 0.5}).status_code == 422
        assert c.post("/derates", json={"asset": asset, "factor": 1.5}).status_code == 422
        r = c.post("/derates", json={"asset": asset, "factor": 0.0, "reason": "fault on the transformer"})
        assert r.status_code == 201, r.text
        derate_id = r.json()["id"]
    server.clock.advance(10)
    engine.watch()  # the watcher sees the change and recomputes at once
    assert _export_limits(server) == [0]  # behind an outage: nothing may flow, for the whole horizon
    with api.client() as c:
        assert c.delete(f"/derates/{derate_id}").status_code == 204
        statuses = [e["status"] for e in c.get("/envelopes").json()["items"]]
    server.clock.advance(10)
    engine.watch()
    assert _export_limits(server) == normal
    assert statuses[0] == "published"
    with server.ctx.sessions() as s:
        reasons = [
            r.reason for r in s.execute(select(EnvelopeSetRecord).order_by(EnvelopeSetRecord.id)).scalars()
        ]
    assert reasons == ["start", "constraint changed", "constraint changed"]


def test_rating_in_watts_and_the_deprecated_kw_alias(api: OperatorApi) -> None:
    """The API speaks W; the kW names still work for older clients, and one name per direction is asked."""
    with api.client() as c:
        c.put("/network", content=DEMO_FILE.read_bytes(), headers={"content-type": "application/yaml"})
        r = c.put("/network/assets/dt-11/rating", json={"export_w": 800_000})
        assert r.status_code == 200, r.text
        dt = next(a for a in r.json()["assets"] if a["name"] == "dt-11")
        assert dt["export_w"] == 800_000 and dt["export_kw"] == 800
        assert dt["import_w"] == dt["import_kw"] * 1000 > 0
        both = c.put("/network/assets/dt-11/rating", json={"export_w": 800_000, "export_kw": 800})
        assert both.status_code == 422 and "export_w or export_kw" in both.text
        assert c.put("/network/assets/dt-11/rating", json={"import_w": -1}).status_code == 422


def test_new_rating_is_a_new_network_version(api: OperatorApi) -> None:
    with api.client() as c:
        c.put("/network", content=DEMO_FILE.read_bytes(), headers={"content-type": "application/yaml"})
        r = c.put("/network/assets/dt-11/rating", json={"export_kw": 800})
        assert r.status_code == 200, r.text
        dt = next(a for a in r.json()["assets"] if a["name"] == "dt-11")
        assert dt["export_kw"] == 800 and dt["import_kw"] > 0  # import kept from the old rating
        assert c.put("/network/assets/nope/rating", json={"export_kw": 1}).status_code == 404
        assert c.put("/network/assets/dt-11/rating", json={}).status_code == 422
        assert c.put("/network/assets/dt-11/rating", json={"export_kw": -5}).status_code == 422
    with api.ctx.sessions() as s:
        assert [m.active for m in s.execute(select(NetworkModel).order_by(NetworkModel.id)).scalars()] == [
            False,
            True,
        ]
