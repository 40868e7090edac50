"""Fail safe, engine side: bad readings, a failing telemetry read, damaged values in the store, a device
clock far ahead, a publisher that lost its right to publish and deadlines that outlive a restart never
keep a safe limit from reaching the grid.

Every check reads what a real device sees over mTLS (DERControlList, DefaultDERControl) or what the
operator API says (GET /feeders/status).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import yaml
from sqlalchemy import select, update

from gridshare.grid.derates import apply_derates
from gridshare.grid.netfile import parse_network_document
from gridshare.process.demo import DEMO_FILE, seed_demo
from gridshare.recompute import run, snapshot
from gridshare.recompute.deadlines import LEAD_FRACTION
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.db import transaction
from gridshare.store.models import (
    AssetDerate,
    Der,
    EnvelopeSetRecord,
    MirrorMeterReading,
    MirrorUsagePoint,
    PublisherLease,
    TelemetryReading,
)
from gridshare.store.publication.envelopes import current_set_id
from tests.support.bodies import SEP_XML, mirror_usage_point
from tests.support.engine import FEEDER, HORIZON_S, active_controls, default_control, site_row
from tests.support.operator_api import OperatorApi, running_operator_api
from tests.support.servers import T0, RunningServer

#: Schema-valid (TimeType is Int64) and as far ahead as a reading can be dated.
INT64_MAX = 2**63 - 1
TEN_YEARS_S = 10 * 365 * 86400
WAREHOUSE = "warehouse-pv"  # device-2's site, on feeder 1: not behind f2-cd
#: Published limits are rounded down to 1 % of a site's size (15 kW for the 1.5 MW warehouse).
WAREHOUSE_STEP_W = 15_000
READ_TYPE = {"uom": 38, "flowDirection": 19, "powerOfTenMultiplier": 0, "kind": 37, "commodity": 1}


@pytest.fixture
def demo(server: RunningServer) -> RunningServer:
    server.ctx.settings.envelope_horizon_s = HORIZON_S
    seed_demo(server.ctx, server.pki)
    return server


@pytest.fixture
def api(demo: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(demo.ctx) as running:
        yield running


def _store_reading(server: RunningServer, name: str, time_s: int, value: int, power_of_ten: int = 0) -> None:
    """A reading in the store as if an earlier version (or a gap in the door checks) had let it in."""
    site = site_row(server, name)
    with transaction(server.ctx.sessions) as s:
        mup = MirrorUsagePoint(
            site_id=site.id,
            mrid=f"5A1E{site.id:028X}",
            role_flags=49,
            service_category=0,
            status=1,
            changed_s=T0,
        )
        s.add(mup)
        s.flush()
        mmr = MirrorMeterReading(mup_id=mup.id, mrid=f"5A1F{site.id:028X}", reading_type=READ_TYPE)
        s.add(mmr)
        s.flush()
        s.add(
            TelemetryReading(
                mmr_id=mmr.id,
                time_s=time_s,
                duration_s=300,
                value=value,
                power_of_ten=power_of_ten,
                received_s=server.ctx.now_s(),
            )
        )


def _post_reading(server: RunningServer, name: str, time_s: int, value: int) -> None:
    """The device posts the reading; if the door refuses it (4xx), it is put in the store directly."""
    me = server.pki.client(name)
    body = mirror_usage_point(
        "5A1E00000000000000000000000000F1", me.lfdi, "5A1E00000000000000000000000000F2", time_s, value
    )
    with server.client(name) as c:
        status = c.post("/mup", content=body, headers=SEP_XML).status_code
    assert status < 500, "a reading must never cause a server error"
    if status != 201:
        _store_reading(server, name, time_s, value)


def _held_at_default(server: RunningServer, export_w: float | None) -> bool:
    """device-2's published export is its safe default (rounded down to the publication step)."""
    default = default_control(server, "device-2")["export"]
    assert isinstance(default, float | int) and export_w is not None
    return bool(default - WAREHOUSE_STEP_W < export_w <= default)


def _outage(api: OperatorApi, asset: str = "f2-cd") -> None:
    with api.client() as c:
        r = c.post("/derates", json={"asset": asset, "factor": 0, "reason": "fail-safe test"})
    assert r.status_code == 201, r.text


def _feeder(api: OperatorApi) -> dict[str, object]:
    with api.client() as c:
        [feeder] = c.get("/feeders/status").json()
    return feeder  # type: ignore[no-any-return]


# ---------------------------------------------------------------- one bad reading, one site


def test_a_reading_dated_near_2_63_costs_its_site_its_envelope_not_the_feeder_its_outage(
    demo: RunningServer, api: OperatorApi
) -> None:
    engine = Recomputer(demo.ctx)
    assert engine.run_once("good").status == "published"
    _post_reading(demo, "device-2", INT64_MAX, 5000)
    _outage(api)
    outcome = engine.run_once("outage entered")
    assert outcome.status == "published", outcome.detail
    assert active_controls(demo, "device-1") == [(0, 0)]  # the outage reached the site behind it
    # the site that sent the reading is held at its safe default, the rest stays dynamic
    [(export, _import)] = active_controls(demo, "device-2")
    assert _held_at_default(demo, export)
    feeder = _feeder(api)
    assert feeder["state"] == "dynamic" and feeder["fallback_sites"] == 1
    assert list(feeder["site_fallbacks"]) == [WAREHOUSE]  # type: ignore[call-overload]
    why = feeder["site_fallbacks"][WAREHOUSE]  # type: ignore[index]
    assert "after the server received it" in why and WAREHOUSE in str(feeder["reason"])


def test_an_implausible_power_holds_only_its_site_at_fallback(demo: RunningServer, api: OperatorApi) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    _store_reading(demo, "device-2", T0, 3, power_of_ten=200)  # 3e200 W from a 1.5 MW site
    assert engine.run_once("bad meter").status == "published"
    [(export, _import)] = active_controls(demo, "device-2")
    assert _held_at_default(demo, export)
    feeder = _feeder(api)
    assert feeder["state"] == "dynamic" and list(feeder["site_fallbacks"]) == [WAREHOUSE]  # type: ignore[call-overload]
    demo.clock.advance(3 * 300 + 1)  # the bad reading is no longer recent, and a good one arrives
    _post_reading(demo, "device-2", demo.ctx.now_s(), 2000)
    assert engine.run_once("later").status == "published"
    assert _feeder(api)["site_fallbacks"] is None


def test_a_failing_telemetry_read_still_publishes_fallback_and_says_why(
    demo: RunningServer, api: OperatorApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    _outage(api)

    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("telemetry table unreadable")

    monkeypatch.setattr(snapshot, "latest_telemetry", broken)
    outcome = engine.run_once("outage entered")
    assert outcome.status == "failed" and outcome.action == "fallback published", outcome
    assert active_controls(demo, "device-1") == [(0, 0)]  # the outage is in the fallback envelopes
    [(export, _import)] = active_controls(demo, "device-2")
    assert export <= default_control(demo, "device-2")["export"]
    feeder = _feeder(api)
    assert feeder["state"] == "fallback"
    assert "telemetry could not be read" in str(feeder["reason"]) and "unreadable" in str(feeder["reason"])


def test_damaged_values_already_in_the_store_cannot_stop_the_engine(demo: RunningServer) -> None:
    """Infinite, NaN and absurd ratings (PostgreSQL keeps NaN and infinity; SQLite infinity)."""
    sites = {name: site_row(demo, name).id for name in ("device-1", "device-2", "device-3")}
    with transaction(demo.ctx.sessions) as s:
        for name, rating in (("device-1", math.inf), ("device-2", 1e300), ("device-3", math.nan)):
            s.add(Der(site_id=sites[name], der_index=7, rtg_max_w=rating, set_max_w=-math.inf))
    engine = Recomputer(demo.ctx)
    outcome = engine.run_once("damaged ratings")
    assert outcome.status == "published", outcome.detail
    for name in ("device-1", "device-2", "device-3"):
        default = default_control(demo, name)
        assert all(math.isfinite(v) for k, v in default.items() if isinstance(v, float)), default
        assert active_controls(demo, name)
    engine.watch()  # the change fingerprint over those ratings is computable too


def test_a_damaged_derate_factor_counts_as_an_outage() -> None:
    nf = parse_network_document(yaml.safe_load(DEMO_FILE.read_text()))
    for factor in (math.nan, -math.inf, -3.0):
        derate = AssetDerate(asset="f2-cd", factor=factor, from_s=0, created_s=T0, created_by="t", reason="")
        assert "f2-d" in apply_derates(nf.network, [derate]).isolated_nodes


# ---------------------------------------------------------------- freshness by receipt time


def test_a_reading_dated_ten_years_ahead_does_not_make_a_stopped_feed_look_fresh(demo: RunningServer) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    _post_reading(demo, "device-2", T0 + TEN_YEARS_S, 2000)
    demo.clock.advance(2 * 3600)  # nothing received since: the metering feed has stopped
    outcome = engine.run_once("metering feed stopped")
    assert outcome.status == "failed" and outcome.detail.startswith("stale telemetry"), outcome
    assert engine.status.get(FEEDER).state == "fallback"  # type: ignore[union-attr]
    [(export, _import)] = active_controls(demo, "device-1")
    assert export <= default_control(demo, "device-1")["export"]


# ---------------------------------------------------------------- one publisher, fenced


def test_a_publisher_that_lost_its_right_publishes_nothing(demo: RunningServer) -> None:
    a = Recomputer(demo.ctx, holder="instance-a")
    assert a.run_once("a").status == "published"
    b = Recomputer(demo.ctx, holder="instance-b")
    assert b.run_once("b").status == "skipped"  # a holds the lock: b does not even compute
    with demo.ctx.sessions() as s:
        set_before = current_set_id(s, FEEDER)
    # Another instance took over (a's lock lost without a noticing, e.g. a partitioned host): the epoch
    # moves on, and a's next publication must fail inside its own transaction.
    with transaction(demo.ctx.sessions) as s:
        s.execute(update(PublisherLease).values(epoch=PublisherLease.epoch + 1, holder="instance-c"))
    demo.clock.advance(3600)  # a new horizon: a would have everything to write
    outcome = a.run_once("stale publisher")
    assert outcome.status == "skipped" and "another instance" in outcome.detail
    with demo.ctx.sessions() as s:
        assert current_set_id(s, FEEDER) == set_before
        holder = s.get(PublisherLease, 1)
        assert holder is not None and holder.holder == "instance-c"
    a.stop()
    b.stop()


def test_the_lock_passes_to_the_standby_the_moment_the_publisher_lets_go(demo: RunningServer) -> None:
    a = Recomputer(demo.ctx, holder="instance-a")
    b = Recomputer(demo.ctx, holder="instance-b")
    assert a.run_once("a").status == "published"
    assert b.run_once("b").status == "skipped"
    a.stop()  # the process ends (a kill -9 ends it the same way: the OS or the database lets go)
    assert b.run_once("b again").status == "published"
    with demo.ctx.sessions() as s:
        epochs = [r.detail.get("epoch") for r in s.execute(select(EnvelopeSetRecord)).scalars()]
    assert epochs == [1, 2]
    b.stop()


def test_an_outage_entered_while_no_publisher_ran_gets_fallback_at_once_on_takeover(
    demo: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Recomputer(demo.ctx)
    first.run_once("good")
    first.stop()  # the publisher dies
    with transaction(demo.ctx.sessions) as s:  # the operator enters an outage meanwhile
        s.add(AssetDerate(asset="f2-cd", factor=0.0, from_s=0, created_s=T0, created_by="t", reason=""))
    demo.clock.advance(60)  # the successor starts after the deadline has passed

    def broken(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the deadline must not wait for a recomputation")

    monkeypatch.setattr(run, "compute_envelopes", broken)
    successor = Recomputer(demo.ctx)
    assert successor.ensure_publisher()  # takes over and learns from the store what is unpublished
    assert successor.check_deadlines()
    assert active_controls(demo, "device-1") == [(0, 0)]
    status = successor.status.get(FEEDER)
    assert status is not None and status.state == "fallback" and "outage of f2-cd" in status.reason
    successor.stop()


def test_a_derate_past_its_deadline_puts_only_the_sites_behind_it_on_fallback(demo: RunningServer) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    elsewhere = active_controls(demo, "device-2")
    with transaction(demo.ctx.sessions) as s:  # a rating change only: no load or generation moves
        s.add(AssetDerate(asset="f2-cd", factor=0.5, from_s=0, created_s=T0, created_by="t", reason=""))
    assert engine.discover()
    starts_s = demo.ctx.settings.derate_deadline_s * (1 - LEAD_FRACTION)  # to be out by the deadline
    demo.clock.advance(starts_s - 1)
    assert not engine.check_deadlines()  # not due yet, on the engine's clock
    demo.clock.advance(1)
    assert engine.check_deadlines()
    [(export, _import)] = active_controls(demo, "device-1")
    assert export <= default_control(demo, "device-1")["export"]
    assert active_controls(demo, "device-2") == elsewhere
    status = engine.status.get(FEEDER)
    assert status is not None and status.fallback_sites == 1 and "derate of f2-cd" in status.reason
    engine.stop()


def test_the_end_of_an_outage_past_its_deadline_puts_the_feeder_on_fallback(demo: RunningServer) -> None:
    """The load and generation behind it come back: everyone's envelope may now be too large."""
    with transaction(demo.ctx.sessions) as s:
        s.add(AssetDerate(asset="f2-cd", factor=0.0, from_s=0, created_s=T0, created_by="t", reason=""))
    engine = Recomputer(demo.ctx)
    assert engine.run_once("with the outage").status == "published"
    assert active_controls(demo, "device-1") == [(0, 0)]
    with transaction(demo.ctx.sessions) as s:
        s.execute(update(AssetDerate).values(cleared_s=T0))
    assert [c.kind for c in engine.discover()] == ["clear"]
    demo.clock.advance(demo.ctx.settings.derate_deadline_s + 1)
    assert engine.check_deadlines()
    for name in ("device-1", "device-2"):
        [(export, _import)] = active_controls(demo, name)
        assert export <= default_control(demo, name)["export"]
    status = engine.status.get(FEEDER)
    assert status is not None and status.state == "fallback" and status.fallback_sites is None
    assert "end of the derate of f2-cd" in status.reason
    assert engine.run_once("recomputed").status == "published"  # and then dynamic again
    assert not engine.check_deadlines()
    engine.stop()
