"""Failure policy end to end: bad data, a failing engine or database, a stopped scheduler and a derate
that cannot wait never leave a device on envelopes from bad data, and always on safe values.

Every check reads what a real device sees over mTLS (DERControlList, DefaultDERControl).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest
from lxml import etree
from sqlalchemy import select

from gridshare.envelopes.forecast import Forecast
from gridshare.fallback import compute_fallback
from gridshare.process.demo import seed_demo
from gridshare.recompute import run
from gridshare.recompute.inputs import active_network
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.access_models import AuditEntry
from gridshare.store.db import transaction
from gridshare.store.envelope_blocks import GrossLimits, decode_blocks
from gridshare.store.models import AssetDerate, DefaultDerControl, EnvelopeSetRecord, SiteEnvelope
from gridshare.store.publication import envelopes as publish_module
from gridshare.store.publication.envelopes import UnboundedControl, check_finite, current_set_id
from gridshare.store.publication.fallback_defaults import ENGINE_DESCRIPTION, override_for, safe_default_for
from tests.support.bodies import SEP_XML, mirror_usage_point
from tests.support.engine import FEEDER, HORIZON_S, active_controls, default_control, site_row
from tests.support.operator_api import OperatorApi, running_operator_api
from tests.support.servers import T0, RunningServer


@pytest.fixture
def demo(server: RunningServer) -> RunningServer:
    server.ctx.settings.envelope_horizon_s = HORIZON_S
    seed_demo(server.ctx, server.pki)
    return server


@pytest.fixture
def api(demo: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(demo.ctx) as running:
        yield running


def _controls(server: RunningServer, name: str) -> bytes:
    site = site_row(server, name)
    with server.client(name) as c:
        return c.get(f"/edev/{site.id}/derp/1/derc", params={"l": 100}).content


def _statuses(server: RunningServer) -> list[str]:
    with server.ctx.sessions() as s:
        return [
            r.status for r in s.execute(select(EnvelopeSetRecord).order_by(EnvelopeSetRecord.id)).scalars()
        ]


def _all_blocks_end_in_time(server: RunningServer) -> None:
    latest = server.ctx.now_s() + HORIZON_S + server.ctx.settings.envelope_interval_s
    with server.ctx.sessions() as s:
        for (blob,) in s.execute(select(SiteEnvelope.blocks)):
            blocks = decode_blocks(blob)
            assert np.all(blocks["duration"] > 0)
            assert np.all(blocks["start"] + blocks["duration"] <= latest)


def _broken_engine(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("solver exploded")


# ---------------------------------------------------------------- fallback defaults


def test_every_dynamic_device_gets_its_computed_fallback_as_its_default(demo: RunningServer) -> None:
    assert Recomputer(demo.ctx).run_once("first").status == "published"
    with demo.ctx.sessions() as s:
        _, nf = active_network(s, FEEDER)
    settings = demo.ctx.settings
    expected = compute_fallback(
        nf.network, list(nf.sites), margin_fraction=settings.fallback_margin_fraction
    ).limits["solar-farm-north"]
    seen = default_control(demo, "device-1")  # device-1 is bound to the north solar farm
    assert seen["description"] == ENGINE_DESCRIPTION
    step_w = settings.envelope_resolution_w  # rounded down to it, then truncated to an Int16: never up
    assert expected.export_w - step_w - 1000 < seen["export"] <= expected.export_w
    assert seen["generation"] <= expected.generation_w and seen["load"] <= expected.load_w
    assert seen["grad"] == expected.set_grad_w_hundredths
    with demo.ctx.sessions() as s:
        safe = safe_default_for(s, site_row(demo, "device-1").id)
    assert safe is not None and "thermal:zone-tx" in safe.explain
    _all_blocks_end_in_time(demo)


def test_published_blocks_must_end(demo: RunningServer) -> None:
    blocks = np.zeros(1, dtype=publish_module.BLOCK_DTYPE)
    blocks["start"], blocks["duration"] = T0, 0
    with pytest.raises(UnboundedControl):
        check_finite(blocks, T0 + 3600, 1)
    blocks["duration"] = 2**40  # "until further notice"
    with pytest.raises(UnboundedControl):
        check_finite(blocks, T0 + 3600, 1)
    blocks["duration"] = 3600
    check_finite(blocks, T0 + 3600, 1)


# ---------------------------------------------------------------- failures


def test_engine_exception_publishes_fallback_envelopes_and_says_so_once(
    demo: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    monkeypatch.setattr(run, "compute_envelopes", _broken_engine)
    caplog.set_level(logging.INFO, logger="gridshare.feeder")
    first = engine.run_once("broken")
    second = engine.run_once("still broken")
    assert first.status == second.status == "failed" and first.action == "fallback published"
    safe = engine.status.get(FEEDER)
    assert safe is not None and safe.state == "fallback" and "engine error: RuntimeError" in safe.reason
    export, _import = active_controls(demo, "device-1")[0]
    assert (
        export <= default_control(demo, "device-1")["export"] + 1e-6
    )  # fallback-valued envelope, not dynamic
    lines = [r.getMessage() for r in caplog.records if r.name == "gridshare.feeder"]
    assert len(lines) == 1 and lines[0].startswith(f"feeder {FEEDER}: fallback since ")
    monkeypatch.undo()
    assert engine.run_once("recovered").status == "published"
    assert engine.status.get(FEEDER).state == "dynamic"
    assert [
        r.getMessage().split(":")[1].split()[0] for r in caplog.records if r.name == "gridshare.feeder"
    ] == [
        "fallback",
        "dynamic",
    ]
    _all_blocks_end_in_time(demo)


def test_overrun_under_the_expire_policy_keeps_the_last_good_envelopes(
    demo: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo.ctx.settings.failure_policy = "expire"
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    before = _controls(demo, "device-1")
    real = run.compute_envelopes

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "compute_envelopes", slow)
    demo.ctx.settings.recompute_budget_s = 0.1
    outcome = engine.run_once("slow")
    assert outcome.status == "failed" and outcome.action == "expiring" and "budget" in outcome.detail
    assert _controls(demo, "device-1") == before  # nothing of the late result is ever published
    status = engine.status.get(FEEDER)
    assert status.state == "stale" and status.reason.startswith("overrun")
    assert status.envelopes_until_s == T0 - T0 % 300 + HORIZON_S
    # while the abandoned computation still runs, the next run fails fast instead of piling up
    assert "still running" in engine.run_once("again").detail
    engine._budget._abandoned.join(5)  # let the abandoned computation finish before the server stops
    assert _statuses(demo) == ["published", "failed", "failed"]


def test_stale_forecast_is_never_published(demo: RunningServer) -> None:
    demo.ctx.settings.failure_policy = "expire"

    def old_forecast(_inputs: object, start: object, interval_s: int, n: int) -> Forecast:
        issued = start - timedelta(hours=3)  # type: ignore[operator]
        return Forecast(issued, start, interval_s, (), np.zeros((n, 0)), np.zeros((n, 0)))  # type: ignore[arg-type]

    engine = Recomputer(demo.ctx, forecast_source=old_forecast)
    outcome = engine.run_once("stale")
    assert outcome.status == "failed" and outcome.detail.startswith("stale forecast")
    with demo.ctx.sessions() as s:
        assert current_set_id(s, FEEDER) is None  # nothing published at all
    assert active_controls(demo, "device-1") == []
    assert default_control(demo, "device-1")["description"] == ENGINE_DESCRIPTION  # the safety net is there


def test_stale_telemetry_falls_back(demo: RunningServer) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    me = demo.pki.client("device-1")
    with demo.client("device-1") as c:
        body = mirror_usage_point(
            "5A1E00000000000000000000000000F1", me.lfdi, "5A1E00000000000000000000000000F2", T0 - 7200, 900
        )
        assert c.post("/mup", content=body, headers=SEP_XML).status_code == 201
    outcome = engine.run_once("metering feed stopped")
    assert outcome.status == "failed" and outcome.detail.startswith("stale telemetry")
    assert engine.status.get(FEEDER).state == "fallback"
    export, _ = active_controls(demo, "device-1")[0]
    assert export <= default_control(demo, "device-1")["export"] + 1e-6


def test_database_failure_mid_publication_leaves_nothing_half_published(
    demo: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    before = _controls(demo, "device-2")
    with demo.ctx.sessions() as s:
        set_before = current_set_id(s, FEEDER)
    real, calls = publish_module.encode_blocks, []

    def fail_on_the_second_site(blocks: np.ndarray, gross: GrossLimits | None = None) -> bytes:
        calls.append(1)
        if len(calls) % 2 == 0:  # one site written, the next one fails
            raise OSError("disk full")
        return real(blocks, gross)

    monkeypatch.setattr(publish_module, "encode_blocks", fail_on_the_second_site)
    demo.clock.advance(3600)  # a new horizon: every site's rows would change
    outcome = engine.run_once("doomed")
    assert outcome.status == "failed" and outcome.detail.startswith("database")
    assert len(calls) == 4  # the dynamic set and then the fallback set both failed part-way
    with demo.ctx.sessions() as s:
        assert current_set_id(s, FEEDER) == set_before
        assert s.query(SiteEnvelope).filter(SiteEnvelope.set_id != set_before).count() == 0
    assert _statuses(demo) == ["published", "failed"]
    status = engine.status.get(FEEDER)
    assert status.state == "stale" and "could not be published either" in status.reason
    demo.clock.advance(-3600)
    assert _controls(demo, "device-2") == before


def test_stopped_scheduler_leaves_devices_on_their_default(demo: RunningServer, api: OperatorApi) -> None:
    engine = Recomputer(demo.ctx)
    engine.start()
    try:
        deadline = time.monotonic() + 20
        while "published" not in _statuses(demo):
            assert time.monotonic() < deadline, "the scheduler never published"
            time.sleep(0.05)
    finally:
        engine.stop()
    assert active_controls(demo, "device-2")
    demo.clock.advance(HORIZON_S + 300)  # nobody recomputes any more
    assert active_controls(demo, "device-2") == []
    root = etree.fromstring(_controls(demo, "device-2"))
    assert root.get("all") == "0"  # every block had an end, and it has passed
    default = default_control(demo, "device-2")
    assert default["description"] == ENGINE_DESCRIPTION and default["export"] is not None
    with api.client() as c:
        [feeder] = c.get("/feeders/status").json()
    assert feeder["state"] == "fallback" and "DefaultDERControl" in feeder["reason"]
    assert feeder["line"].startswith(f"feeder {FEEDER}: fallback since ")


def test_derate_during_a_recomputation_gets_fallback_by_the_deadline(
    demo: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo.ctx.settings.derate_deadline_s = 0.3
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    elsewhere = _controls(demo, "device-2")  # feeder 1: not behind the derated line
    real, entered, release, results = run.compute_envelopes, threading.Event(), threading.Event(), []

    def stuck(*args: object, **kwargs: object) -> object:
        entered.set()
        release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "compute_envelopes", stuck)
    slow = threading.Thread(target=lambda: results.append(engine.run_once("slow")))
    slow.start()
    try:
        assert entered.wait(20)
        with transaction(demo.ctx.sessions) as s:  # an outage of the line feeding the north solar farm
            s.add(
                AssetDerate(
                    asset="f2-cd",
                    factor=0.0,
                    reason="test",
                    from_s=0,
                    until_s=None,
                    created_s=T0,
                    created_by="t",
                )
            )
        engine.watch()  # a run is in progress: it cannot publish the outage, the deadline will
        # The deadline runs on the engine's clock, not the wall clock: still T0, so not yet due.
        time.sleep(0.5)
        assert not engine.check_deadlines()
        assert engine.status.get(FEEDER).state == "dynamic"
        demo.clock.advance(1)  # now past created_s + 0.3 s
        assert engine.check_deadlines()
        assert engine.status.get(FEEDER).state == "fallback"
        assert active_controls(demo, "device-1") == [(0, 0)]  # behind the outage: nothing either way
        # An outage takes the load and generation behind it off the feeder: everyone else's envelope
        # was computed with them, so everyone gets fallback limits too.
        assert _controls(demo, "device-2") != elsewhere
        [(export, _import)] = active_controls(demo, "device-2")
        assert export <= default_control(demo, "device-2")["export"]
        status = engine.status.get(FEEDER)
        assert "outage of f2-cd" in status.reason and status.fallback_sites is None
    finally:
        release.set()
        slow.join(20)
    assert results[0].status == "skipped" and "constraint changed" in results[0].detail
    monkeypatch.undo()
    engine.watch()  # the watcher recomputes with the outage
    assert engine.status.get(FEEDER).state == "dynamic"
    assert active_controls(demo, "device-1") == [(0, 0)]
    with demo.ctx.sessions() as s:
        reasons = [
            r.reason for r in s.execute(select(EnvelopeSetRecord).order_by(EnvelopeSetRecord.id)).scalars()
        ]
    assert reasons == ["good", "fallback (derate deadline)", "constraint changed"]


# ---------------------------------------------------------------- operators and the safe values


def test_operators_may_lower_a_default_but_raising_it_needs_an_audited_override(
    demo: RunningServer, api: OperatorApi
) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    site = site_row(demo, "device-1")
    url = f"/sites/{site.id}/programs/1/default-control"
    with api.client() as c:
        safe = c.get(f"/sites/{site.id}/fallback").json()
        assert "thermal:zone-tx" in safe["explain"]
        before = api.audit_count()
        r = c.put(url, json={"export_limit_w": safe["export_limit_w"] + 1000, "import_limit_w": 1e9})
        assert r.status_code == 422
        assert [e["loc"] for e in r.json()["detail"]] == [
            ["body", "export_limit_w"],
            ["body", "import_limit_w"],
        ]
        assert api.audit_count() == before
        lower = safe["export_limit_w"] // 2
        r = c.put(url, json={"export_limit_w": lower})
        assert r.status_code == 200, r.text
        assert r.json()["import_limit_w"] == safe["import_limit_w"]  # left out: the safe value, not unlimited
    engine.run_once("operator lowered")
    assert default_control(demo, "device-1")["export"] <= lower  # the operator's lower value stays
    with api.client() as c:  # a derate drops the safe value below the operator's: the engine lowers it
        derate = c.post("/derates", json={"asset": "f2-cd", "factor": 0.01, "reason": "hot joint"}).json()
    engine.run_once("derated")
    lowered = default_control(demo, "device-1")
    assert lowered["export"] == 0 and lowered["description"] != ENGINE_DESCRIPTION
    with api.client() as c:
        assert c.delete(f"/derates/{derate['id']}").status_code == 204
    engine.run_once("derate cleared")
    assert default_control(demo, "device-1")["export"] == 0  # an operator's row is never raised by the engine
    with api.client() as c:
        r = c.put(url, params={"override": "true"}, json={"export_limit_w": safe["export_limit_w"] * 2})
        assert r.status_code == 200, r.text
    with demo.ctx.sessions() as s:
        entry = s.execute(select(AuditEntry).order_by(AuditEntry.id.desc())).scalars().first()
        assert entry.details["override"] is True and entry.details["above_safe"] == ["export_limit_w"]
        assert override_for(s, site.id)["actor"] == entry.actor
    engine.run_once("overridden")
    assert default_control(demo, "device-1")["export"] > safe["export_limit_w"]  # kept: the operator said so
    with api.client() as c:
        assert c.delete(url).status_code == 204
    engine.run_once("back to computed")
    assert default_control(demo, "device-1")["description"] == ENGINE_DESCRIPTION
    with demo.ctx.sessions() as s:
        assert override_for(s, site.id) is None
        row = s.execute(select(DefaultDerControl).where(DefaultDerControl.site_id == site.id)).scalar_one()
        assert row.export_limit_w == safe["export_limit_w"]
    with api.client() as c:
        [feeder] = c.get("/feeders/status").json()
        assert feeder["state"] == "dynamic" and feeder["feeder"] == FEEDER
        assert c.get("/fallback").json()["total"] == 3  # every registered dynamic site (the 3 dev devices)
