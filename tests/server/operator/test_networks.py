"""Many networks side by side through the operator API: load by name, list, retire, move sites between
them, derate and re-rate one without touching the other, and the engine publishing each of them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from gridshare.process.demo import DEMO_FILE, seed_demo
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.models import Site
from gridshare.store.publication.network_docs import json_document
from tests.support.operator_api import (
    OPERATOR,
    VIEWER,
    OperatorApi,
    assert_field_error,
    console_login,
    running_operator_api,
)
from tests.support.servers import RunningServer

DEMO, NORTH = "demo-feeder", "north-feeder"
YAML = {"content-type": "application/yaml"}
EV_DEPOT_NMI = "5100000105"  # device-3's site in the demo feeder (seed_demo binds it)


def _demo_document() -> dict[str, Any]:
    return json_document(yaml.safe_load(DEMO_FILE.read_text()))


def _north_document(*, keep_nmis: tuple[str, ...] = ()) -> dict[str, Any]:
    """The demo feeder again under another name, its NMIs renumbered (51... -> 52...) except `keep_nmis`."""
    doc = copy.deepcopy(_demo_document())
    doc["name"] = NORTH
    for site in doc["sites"]:
        if site.get("nmi") and site["nmi"] not in keep_nmis:
            site["nmi"] = "52" + site["nmi"][2:]
    return doc


def _nmis(api: OperatorApi, network: str) -> set[str]:
    with api.client(VIEWER) as c:
        r = c.get(f"/networks/{network}/sites")
        assert r.status_code == 200, r.text
        return {s["nmi"] for s in r.json() if s["nmi"]}


def _site_id(server: RunningServer, device: str) -> int:
    lfdi = server.pki.client(device).lfdi
    with server.ctx.sessions() as s:
        return int(s.execute(select(Site.id).where(Site.lfdi == lfdi)).scalar_one())


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    with running_operator_api(server.ctx) as running:
        yield running


@pytest.fixture
def two(server: RunningServer, api: OperatorApi) -> OperatorApi:
    """The demo feeder (its devices bound, as `gridshare serve --demo` does) and north-feeder beside it."""
    seed_demo(server.ctx, server.pki)
    with api.client() as c:
        r = c.put(f"/networks/{NORTH}", json=_north_document())
        assert r.status_code == 201, r.text
    return api


def test_two_networks_are_loaded_listed_read_and_retired_by_name(
    server: RunningServer, api: OperatorApi
) -> None:
    before = api.audit_count()
    with api.client() as c:
        first = c.put(f"/networks/{DEMO}", content=DEMO_FILE.read_bytes(), headers=YAML)
        assert first.status_code == 201, first.text
        assert first.json()["name"] == DEMO and first.json()["sites"] == 30
        second = c.put(f"/networks/{NORTH}", json=_north_document())
        assert second.status_code == 201, second.text
        again = c.put(f"/networks/{NORTH}", json=_north_document())  # a new version of the same network
        assert again.status_code == 200 and again.json()["id"] != second.json()["id"]
    assert api.audit_count() == before + 3

    with api.client(VIEWER) as c:
        listed = c.get("/networks").json()
        assert [n["name"] for n in listed] == [DEMO, NORTH]
        north = next(n for n in listed if n["name"] == NORTH)
        assert north["network_id"] == again.json()["id"]  # the current version
        assert north["sites"] == 30 and north["registered_sites"] == 0 and north["loaded_by"] == OPERATOR
        assert north["state"] == "unknown" and north["current_set_id"] is None  # nothing computed yet
        assert c.get(f"/networks/{DEMO}").json()["sites"] == 30
        many = c.get("/network")  # the single-feeder endpoint cannot pick one
        assert many.status_code == 409 and NORTH in many.json()["detail"]
        missing = c.get("/networks/no-such-feeder")
        assert missing.status_code == 404 and DEMO in missing.json()["detail"]
        assert c.delete(f"/networks/{NORTH}").status_code == 403  # a viewer cannot retire

    with api.client() as c:
        assert c.delete(f"/networks/{NORTH}").status_code == 204
        assert c.get(f"/networks/{NORTH}").status_code == 404
        assert c.delete(f"/networks/{NORTH}").status_code == 404
        assert [n["name"] for n in c.get("/networks").json()] == [DEMO]
        assert c.get("/network").json()["name"] == DEMO  # one left: the single-feeder API works again
        actions = [e["action"] for e in c.get("/audit").json()["items"]]
        assert actions.count("network.retire") == 1 and actions.count("network.load") == 3


def test_a_bad_load_is_refused_with_a_reason_and_writes_nothing(api: OperatorApi) -> None:
    before = api.audit_count()
    with api.client() as c:
        assert_field_error(c.put(f"/networks/{NORTH}", json=_demo_document()), "body", "name")
        nameless = _north_document()
        del nameless["name"]
        assert_field_error(c.put(f"/networks/{NORTH}", json=nameless), "body", "name")
        bad_node = _north_document()
        bad_node["sites"][2]["node"] = "lv-99"
        assert_field_error(c.put(f"/networks/{NORTH}", json=bad_node), "body", "sites", 2, "node")
        spaced = {**_north_document(), "name": "north feeder!"}
        assert_field_error(c.put("/networks/north%20feeder!", json=spaced), "path", "name")
        too_long = "n" * 65
        assert c.put(f"/networks/{too_long}", json={**_north_document(), "name": too_long}).status_code == 422
        assert_field_error(c.put(f"/networks/{NORTH}", json=[1, 2]), "body")
        unreadable = c.put(f"/networks/{NORTH}", content=b"name: [unclosed", headers=YAML)
        assert unreadable.status_code == 422
        assert (
            c.put(f"/networks/{NORTH}", content=b"x", headers={"content-type": "text/plain"}).status_code
            == 415
        )
        assert c.get("/networks").json() == []
        for path in (f"/networks/{NORTH}/derates", f"/networks/{NORTH}/sites"):
            assert c.get(path).status_code == 404
        assert c.get("/envelopes", params={"network": NORTH}).status_code == 404
        assert c.get("/envelopes", params={"network": ""}).status_code == 422
    assert api.audit_count() == before


def test_a_site_another_network_holds_moves_only_when_asked(server: RunningServer, two: OperatorApi) -> None:
    api = two
    assert EV_DEPOT_NMI in _nmis(api, DEMO)
    taking = _north_document(keep_nmis=(EV_DEPOT_NMI,))
    before = api.audit_count()
    with api.client() as c:
        refused = c.put(f"/networks/{NORTH}", json=taking)
        assert refused.status_code == 409
        assert EV_DEPOT_NMI in refused.json()["detail"] and DEMO in refused.json()["detail"]
        assert api.audit_count() == before
        assert EV_DEPOT_NMI not in _nmis(api, NORTH)

        moved = c.put(f"/networks/{NORTH}", params={"move_sites": "true"}, json=taking)
        assert moved.status_code == 200, moved.text
        assert moved.json()["moved_sites"] == {EV_DEPOT_NMI: DEMO}
    assert EV_DEPOT_NMI in _nmis(api, NORTH)
    assert EV_DEPOT_NMI not in _nmis(api, DEMO)
    with api.client(VIEWER) as c:
        by_name = {n["name"]: n for n in c.get("/networks").json()}
        assert by_name[DEMO]["sites"] == 29 and by_name[NORTH]["sites"] == 30
        # device-3's EndDevice follows its NMI: it is now one of north-feeder's registered sites
        assert by_name[DEMO]["registered_sites"] == 2 and by_name[NORTH]["registered_sites"] == 1
        status = c.get(f"/sites/{_site_id(server, 'device-3')}/status").json()
        assert status["network"] == NORTH and status["network_site_id"] == "ev-depot"
    entry = next(
        e for e in api_audit(api) if e["action"] == "network.load" and "moved_sites" in (e["details"] or {})
    )
    assert entry["details"]["moved_sites"] == {EV_DEPOT_NMI: DEMO}


def api_audit(api: OperatorApi) -> list[dict[str, Any]]:
    with api.client(VIEWER) as c:
        return list(c.get("/audit").json()["items"])


def test_derates_and_ratings_name_their_network(two: OperatorApi) -> None:
    api = two
    with api.client() as c:
        # the same asset name exists in both networks: the API will not guess which
        assert_field_error(c.post("/derates", json={"asset": "f2-cd", "factor": 0.5}), "body", "network")
        r = c.post(
            f"/networks/{NORTH}/derates", json={"asset": "f2-cd", "factor": 0.5, "reason": "hot joint"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["network"] == NORTH
        named = c.post("/derates", json={"asset": "dt-11", "factor": 0.0, "network": DEMO})
        assert named.status_code == 201 and named.json()["network"] == DEMO

        assert [d["asset"] for d in c.get(f"/networks/{NORTH}/derates").json()["items"]] == ["f2-cd"]
        assert [d["asset"] for d in c.get(f"/networks/{DEMO}/derates").json()["items"]] == ["dt-11"]
        assert [d["asset"] for d in c.get("/derates", params={"network": NORTH}).json()["items"]] == ["f2-cd"]
        assert c.get("/derates").json()["total"] == 2
        summaries = {n["name"]: n for n in c.get("/networks").json()}
        assert [d["asset"] for d in summaries[NORTH]["derates_active"]] == ["f2-cd"]
        assert [d["asset"] for d in summaries[DEMO]["derates_active"]] == ["dt-11"]

        # wrong or unknown names: 4xx with a reason, nothing written
        assert_field_error(
            c.post(f"/networks/{NORTH}/derates", json={"asset": "f2-cd", "factor": 0.5, "network": DEMO}),
            "body",
            "network",
        )
        assert_field_error(
            c.post(f"/networks/{NORTH}/derates", json={"asset": "nope", "factor": 0.5}), "body", "asset"
        )
        gone = c.post("/networks/no-such-feeder/derates", json={"asset": "f2-cd", "factor": 0.5})
        assert gone.status_code == 404 and NORTH in gone.json()["detail"]
        assert_field_error(
            c.post("/derates", json={"asset": "f2-cd", "factor": 0.5, "network": "nope"}), "body", "network"
        )
        assert c.get("/derates").json()["total"] == 2

        # a rating on north-feeder is a new version of it; demo-feeder's f2-cd keeps its rating
        demo_before = c.get(f"/networks/{DEMO}").json()["network_id"]
        rated = c.put(f"/networks/{NORTH}/assets/f2-cd/rating", json={"export_w": 5_000_000})
        assert rated.status_code == 200, rated.text
        assert next(a for a in rated.json()["assets"] if a["name"] == "f2-cd")["export_w"] == 5_000_000
        assert c.get(f"/networks/{DEMO}").json()["network_id"] == demo_before
        assert c.put(f"/networks/{NORTH}/assets/nope/rating", json={"export_w": 1}).status_code == 404
        assert c.put("/networks/no-such-feeder/assets/f2-cd/rating", json={"export_w": 1}).status_code == 404
        assert c.put("/network/assets/f2-cd/rating", json={"export_w": 1}).status_code == 409


def test_the_engine_publishes_each_network_and_every_view_answers(
    server: RunningServer, two: OperatorApi
) -> None:
    api = two
    with api.client() as c:
        moved = c.put(
            f"/networks/{NORTH}",
            params={"move_sites": "true"},
            json=_north_document(keep_nmis=(EV_DEPOT_NMI,)),
        )
        assert moved.status_code == 200, moved.text
        assert c.post(f"/networks/{NORTH}/derates", json={"asset": "dt-11", "factor": 0.5}).status_code == 201
    outcome = Recomputer(server.ctx).run_once()
    assert outcome.status == "published", outcome

    with api.client(VIEWER) as c:
        for name in (DEMO, NORTH):
            sets = c.get("/envelopes", params={"network": name}).json()["items"]
            assert sets and {s["network"] for s in sets} == {name}
            assert any(s["status"] == "published" for s in sets)
        every = c.get("/envelopes").json()["items"]
        assert {s["network"] for s in every} >= {DEMO, NORTH}
        summaries = {n["name"]: n for n in c.get("/networks").json()}
        assert all(n["current_set_id"] is not None for n in summaries.values())
        assert summaries[DEMO]["current_set_id"] != summaries[NORTH]["current_set_id"]
        assert {n["state"] for n in summaries.values()} == {"dynamic"}
        assert {f["feeder"] for f in c.get("/feeders/status").json()} == {DEMO, NORTH}

        # device-3 moved: its envelope now comes from north-feeder's set
        device3 = c.get(f"/sites/{_site_id(server, 'device-3')}/status").json()
        assert device3["set_id"] == summaries[NORTH]["current_set_id"] and device3["envelope"]
        device1 = c.get(f"/sites/{_site_id(server, 'device-1')}/status").json()
        assert device1["set_id"] == summaries[DEMO]["current_set_id"] and device1["network"] == DEMO

        # nothing in the API trips over there being several networks
        for name in (DEMO, NORTH):
            for view in (
                "",
                "/constraints",
                "/sites",
                "/compliance",
                "/curtailment",
                "/curtailment.csv",
                "/derates",
            ):
                r = c.get(f"/networks/{name}{view}")
                assert r.status_code == 200, (name, view, r.text)
        for path in ("/fleet", "/fallback", "/derates", "/notifications/status", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        fleet = {r["site_id"]: r["network"] for r in c.get("/fleet").json()}
        assert fleet[_site_id(server, "device-3")] == NORTH
        metrics = c.get("/metrics").text
        assert f'gridshare_publication_age_seconds{{network="{NORTH}"}}' in metrics
        assert f'gridshare_publication_age_seconds{{network="{DEMO}"}}' in metrics


def test_the_console_lists_every_network_and_derates_the_chosen_ones_asset(
    server: RunningServer, two: OperatorApi
) -> None:
    api = two
    Recomputer(server.ctx).run_once()
    c, csrf = console_login(api, OPERATOR)
    try:
        overview = c.get("/console/")
        assert overview.status_code == 200
        for name in (DEMO, NORTH):
            assert f'href="/console/networks/{name}"' in overview.text
        for path in (
            f"/console/networks/{NORTH}",
            f"/console/networks/{NORTH}/curtailment",
            "/console/fleet",
            "/console/derates",
            f"/console/sites/{_site_id(server, 'device-1')}",
        ):
            assert c.get(path).status_code == 200, path
        assert c.get("/console/networks/no-such-feeder").status_code == 404
        page = c.get("/console/derates", params={"network": NORTH, "asset": "f2-cd"}).text
        assert f'value="{NORTH}/f2-cd" selected' in page

        # an asset name both networks have, without the network: refused with the reason
        ambiguous = c.post("/console/derates/confirm", data={"csrf": csrf, "asset": "f2-cd", "percent": "50"})
        assert ambiguous.status_code == 422 and NORTH in ambiguous.text
        confirm = c.post(
            "/console/derates/confirm", data={"csrf": csrf, "target": f"{NORTH}/f2-cd", "percent": "50"}
        )
        assert confirm.status_code == 200 and NORTH in confirm.text
        done = c.post(
            "/console/derates",
            data={"csrf": csrf, "network": NORTH, "asset": "f2-cd", "factor": "0.5"},
        )
        assert done.status_code == 303
        assert done.headers["location"].startswith(f"/console/networks/{NORTH}?asset=f2-cd&done=derate-")
    finally:
        c.close()
    with api.client(VIEWER) as v:
        (derate,) = v.get("/derates").json()["items"]
        assert derate["network"] == NORTH and derate["asset"] == "f2-cd"
