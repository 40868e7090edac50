"""The operator's views through the JSON API: networks by name, constraints, site status, compliance,
curtailment, fleet, metrics, the console login and its CSRF checks, and /docs without a CDN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from gridshare.process.demo import seed_demo
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.models import EnvelopeSetRecord, Site
from tests.support.bodies import SEP_XML, meter_reading, mirror_usage_point
from tests.support.operator_api import OPERATOR, VIEWER, OperatorApi, console_login, running_operator_api
from tests.support.servers import RunningServer

NET = "demo-feeder"


@dataclass
class Demo:
    server: RunningServer
    api: OperatorApi
    engine: Recomputer

    def site_id(self, device: str) -> int:
        lfdi = self.server.pki.client(device).lfdi
        with self.server.ctx.sessions() as s:
            return int(s.execute(select(Site.id).where(Site.lfdi == lfdi)).scalar_one())

    def poll(self, device: str, times: int = 1) -> None:
        with self.server.client(device) as c:
            for _ in range(times):
                assert c.get(f"/edev/{self.site_id(device)}/derp/1/derc", params={"l": 10}).status_code == 200
        self.server.ctx.contacts.flush(self.server.ctx.sessions)


@pytest.fixture
def demo(server: RunningServer) -> Iterator[Demo]:
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    seed_demo(
        server.ctx, server.pki
    )  # device-1 at solar-farm-north, device-2 warehouse-pv, device-3 ev-depot
    engine = Recomputer(server.ctx)
    assert engine.run_once().status == "published"
    with running_operator_api(server.ctx) as api:
        yield Demo(server, api, engine)


def _constraint(body: dict, name: str, direction: str = "export") -> dict:
    return next(c for c in body["constraints"] if c["name"] == name and c["direction"] == direction)


def test_networks_by_name_and_their_constraints_follow_a_derate(demo: Demo) -> None:
    with demo.api.client(VIEWER) as c:
        (net,) = c.get("/networks").json()
        assert net["name"] == NET and net["state"] == "dynamic"
        assert net["devices"] == {
            "total": 3,
            "polling": 0,
            "late": 0,
            "presumed_on_fallback": 0,
            "never_connected": 3,
        }
        assert net["last_recomputation"]["status"] == "published"
        before = _constraint(c.get(f"/networks/{NET}/constraints").json(), "thermal:f2-cd")
        assert len(before["rating"]) == 24 and before["derated"] is False
        missing = c.get("/networks/elsewhere/constraints")
        assert missing.status_code == 404 and NET in missing.json()["detail"]
    with demo.api.client(OPERATOR) as c:
        assert c.post("/derates", json={"asset": "f2-cd", "factor": 0.5, "reason": "test"}).status_code == 201
    assert demo.engine.run_once("constraint changed").status == "published"
    with demo.api.client(VIEWER) as c:
        after = _constraint(c.get(f"/networks/{NET}/constraints").json(), "thermal:f2-cd")
        summary = c.get(f"/networks/{NET}").json()
    assert after["derated"] is True
    assert after["rating"] == pytest.approx([r / 2 for r in before["rating"]])
    assert all(s >= -1.0 for s in after["spare"])  # flexible sites kept within the derated rating
    assert [d["asset"] for d in summary["derates_active"]] == ["f2-cd"]


def test_site_status_shows_envelope_default_contact_and_telemetry(demo: Demo) -> None:
    site = demo.site_id("device-1")
    with demo.api.client(VIEWER) as c:
        quiet = c.get(f"/sites/{site}/status").json()
    assert quiet["contact"]["state"] == "never connected"
    demo.poll("device-1", times=3)
    me = demo.server.pki.client("device-1")
    with demo.server.client("device-1") as c:
        body = mirror_usage_point("A1" * 16, me.lfdi, "B2" * 16, demo.server.clock.at_s - 30, 1234567)
        assert c.post("/mup", content=body, headers=SEP_XML).status_code == 201
    with demo.api.client(VIEWER) as c:
        status = c.get(f"/sites/{site}/status").json()
    assert status["network"] == NET and status["network_site_id"] == "solar-farm-north"
    assert status["contact"]["state"] == "polling" and status["contact"]["derc_polls"] == 3
    assert status["contact"]["advertised_poll_s"] == 60
    assert status["telemetry"]["export_w"] == 1234567
    first = status["envelope"][0]
    assert first["source"] == "dynamic" and first["start_s"] <= demo.server.clock.at_s < first["end_s"]
    assert first["export_limit_w"] > 0 and first["export_set_by"] not in ("", "-")
    assert status["default"]["scope"] == "site" and "computed safe fallback" in status["default"]["why"]
    assert "curtailment guaranteed at most 5 %" in status["agreement"]


def _post_readings(demo: Demo, device: str, readings: list[tuple[int, int]]) -> None:
    me = demo.server.pki.client(device)
    with demo.server.client(device) as c:
        (t0, v0), *rest = readings
        r = c.post("/mup", content=mirror_usage_point("C3" * 16, me.lfdi, "D4" * 16, t0, v0), headers=SEP_XML)
        assert r.status_code == 201, r.text
        for t, v in rest:
            assert c.post(
                r.headers["location"], content=meter_reading("D4" * 16, t, v), headers=SEP_XML
            ).status_code in (
                201,
                204,
            )


def test_compliance_finds_a_breach_after_the_set_is_replaced(demo: Demo) -> None:
    site = demo.site_id("device-1")
    with demo.api.client(VIEWER) as c:
        envelope = c.get(f"/sites/{site}/status").json()["envelope"]
    t0 = demo.server.clock.at_s
    limit_at = {r["start_s"]: r["export_limit_w"] for r in envelope}
    first, second = sorted(limit_at)[:2]
    # Well inside the limit in the first interval; 500 kW over it in the second (tolerance: 4 % of 4 MW).
    # The device reports after the fact: readings dated ahead of the server's clock are refused.
    demo.server.clock.advance(second + 130 - t0)
    _post_readings(
        demo,
        "device-1",
        [(first + 120, int(limit_at[first] / 2)), (second + 120, int(limit_at[second] + 500_000))],
    )
    demo.server.clock.advance(t0 + 900 - demo.server.clock.at_s)
    assert demo.engine.run_once().status == "published"  # the readings' limits now live in the history
    with demo.api.client(VIEWER) as c:
        result = c.get(f"/sites/{site}/compliance", params={"hours": 1}).json()
        fleet = c.get(f"/networks/{NET}/compliance", params={"hours": 1}).json()
    assert result["readings"] == 2 and result["intervals"] == 2 and result["compliant_intervals"] == 1
    (breach,) = result["breaches"]
    assert breach["direction"] == "export" and breach["start_s"] == second
    assert breach["max_excess_w"] == pytest.approx(500_000, abs=1)
    assert breach["limit_w"] == pytest.approx(limit_at[second])
    assert fleet["sites_non_compliant"] == 1 and fleet["sites"][0]["site_id"] == site
    assert t0 < second + 120 < t0 + 900


def test_a_silent_device_is_presumed_on_fallback(demo: Demo) -> None:
    demo.poll("device-2")
    demo.server.clock.advance(demo.server.ctx.settings.device_fallback_timeout_s + 60)
    with demo.api.client(VIEWER) as c:
        rows = {r["site_id"]: r["contact"]["state"] for r in c.get("/fleet").json()}
        fleet = c.get(f"/networks/{NET}/compliance").json()
    assert rows[demo.site_id("device-2")] == "presumed on fallback"
    assert rows[demo.site_id("device-1")] == "never connected"
    assert fleet["presumed_on_fallback"] == [demo.site_id("device-2")]


def test_curtailment_ledger_settles_against_the_guarantee(demo: Demo) -> None:
    # Take most of the rating off the line feeding the solar farm so its envelope holds it back.
    with demo.api.client(OPERATOR) as c:
        assert c.post("/derates", json={"asset": "f2-cd", "factor": 0.05}).status_code == 201
    demo.server.clock.advance(17 * 3600)  # midday in New York: the farm could produce
    assert demo.engine.run_once().status == "published"
    demo.server.clock.advance(3600)
    assert demo.engine.run_once().status == "published"
    site = demo.site_id("device-1")
    with demo.api.client(VIEWER) as c:
        ledger = c.get(f"/sites/{site}/curtailment").json()
        csv_text = c.get(f"/networks/{NET}/curtailment.csv").text
    s = ledger["settlement"]
    assert ledger["year"] == 2026 and ledger["network_site_id"] == "solar-farm-north"
    assert 0 < s["curtailed_kwh"] <= s["potential_kwh"]
    assert s["curtailed_pct"] == pytest.approx(100 * s["curtailed_kwh"] / s["potential_kwh"], abs=0.01)
    assert s["guarantee"] == {"max_annual_pct": 5.0, "price_per_kwh": 0.08, "currency": "USD"}
    assert s["beyond_kwh"] == pytest.approx(s["curtailed_kwh"] - 0.05 * s["potential_kwh"], abs=0.01)
    assert s["owed"] == pytest.approx(0.08 * s["beyond_kwh"], abs=0.01)
    header, *rows = csv_text.strip().splitlines()
    assert header.startswith("network,network_site_id,site_id,nmi,day,")
    mine = [r for r in rows if ",solar-farm-north," in r]
    assert mine and mine[-1].endswith(",USD")


def test_console_login_guards_every_write_with_csrf(demo: Demo) -> None:
    c, csrf = console_login(demo.api, OPERATOR)
    try:
        assert c.get("/networks").status_code == 200  # the session cookie reads the JSON API too
        body = {"asset": "dt-11", "factor": 0.5}
        assert c.post("/derates", json=body).status_code == 403  # no CSRF token: refused
        assert c.post("/derates", json=body, headers={"x-csrf-token": "forged"}).status_code == 403
        assert c.post("/derates", json=body, headers={"x-csrf-token": csrf}).status_code == 201
        form = {"csrf": "wrong", "asset": "dt-11", "percent": "50"}
        assert c.post("/console/derates/confirm", data=form).status_code == 403
        evil = {"origin": "http://evil.example"}
        assert (
            c.post("/console/derates/confirm", data={**form, "csrf": csrf}, headers=evil).status_code == 403
        )
        assert c.post("/console/derates/confirm", data={**form, "csrf": csrf}).status_code == 200
        assert c.post("/console/logout", data={"csrf": csrf}).status_code == 303
        assert c.get("/networks").status_code == 401
        assert c.get("/console/").status_code == 303  # back to the login form
    finally:
        c.close()
    viewer, viewer_csrf = console_login(demo.api, VIEWER)
    try:
        refused = viewer.post(
            "/derates", json={"asset": "dt-11", "factor": 0.5}, headers={"x-csrf-token": viewer_csrf}
        )
        assert refused.status_code == 403
        page = viewer.post(
            "/console/derates/confirm", data={"csrf": viewer_csrf, "asset": "dt-11", "percent": "50"}
        )
        assert page.status_code == 403 and "read-only" in page.text
    finally:
        viewer.close()
    assert demo.api.audit_count() == 1  # only the operator's one accepted write


def test_a_bad_token_does_not_log_in(demo: Demo) -> None:
    with httpx.Client(base_url=demo.api.base_url, timeout=10) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)[1]  # type: ignore[index]
        r = c.post("/console/login", data={"csrf": csrf, "token": "nope"})
        assert r.status_code == 303 and "error=token" in r.headers["location"]
        assert "gridshare_console" not in r.headers.get("set-cookie", "")


def test_docs_are_served_without_a_cdn(demo: Demo) -> None:
    with httpx.Client(base_url=demo.api.base_url, timeout=10) as c:
        page = c.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower() and "/docs/static/swagger-ui-bundle.js" in page.text
        bundle = c.get("/docs/static/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        assert c.get("/docs/static/swagger-ui.css").status_code == 200
        assert "/networks/{name}/constraints" in c.get("/openapi.json").json()["paths"]


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in /metrics")


def test_metrics_count_device_requests_and_read_the_store(demo: Demo) -> None:
    with httpx.Client(base_url=demo.api.base_url, timeout=10) as c:
        before = c.get("/metrics").text
    demo.poll("device-1", times=4)
    with httpx.Client(base_url=demo.api.base_url, timeout=10) as c:
        after = c.get("/metrics").text
    name = "gridshare_device_requests_total"
    # Counters are per process: earlier tests may have counted requests already, or none at all.
    try:
        counted_before = _metric(before, name, resource="DERControlList", code="200")
    except AssertionError:
        counted_before = 0.0
    gained = _metric(after, name, resource="DERControlList", code="200") - counted_before
    assert gained == 4
    assert _metric(after, "gridshare_derc_cache_requests_total", result="hit") >= 3
    assert _metric(after, "gridshare_device_request_duration_seconds_count", resource="DERControlList") >= 4
    assert _metric(after, "gridshare_recomputations_total", network=NET, status="published") == 1
    assert _metric(after, "gridshare_feeder_state", network=NET, state="dynamic") == 1
    assert _metric(after, "gridshare_publication_age_seconds", network=NET) == 0
    assert _metric(after, "gridshare_devices", network=NET, state="never_connected") >= 2
    assert _metric(after, "gridshare_sites_non_compliant") == 0


def test_the_overview_says_when_envelopes_were_raised_to_or_cannot_carry_the_fallback(demo: Demo) -> None:
    """An operator sees, per recomputation, how many limits were raised to their device's fallback and,
    as a warning, in how many intervals the network could not carry every fallback limit."""
    c, _ = console_login(demo.api, OPERATOR)
    try:
        plain = c.get("/console/").text
        assert "intervals cannot carry" not in plain  # the demo's fallback limits fit
        with demo.server.write() as s:
            latest = (
                s.execute(select(EnvelopeSetRecord).order_by(EnvelopeSetRecord.id.desc())).scalars().first()
            )
            assert latest is not None and latest.detail is not None
            latest.detail = {**latest.detail, "raised_to_fallback": 7, "fallback_not_carried": 2}
        page = c.get("/console/").text
    finally:
        c.close()
    assert "7 limits raised to their device" in page
    row = next(line for line in page.splitlines() if "intervals cannot carry" in line)
    assert "2 intervals cannot carry every fallback limit" in row and "badge warn" in row
    assert re.search(r'<tr class="warn-row">', page)
