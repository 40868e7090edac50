"""Envelope controls carry the site's gross limits, so a device applying its default mode by mode is not
held at the default's generation limit while a dynamic envelope is active.

Devices are read over mTLS and interpreted by the simulator's own event rules (sim.events, sim.wire):
every mode an event leaves unset comes from the DefaultDERControl, as many CSIP-AUS devices do it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from gridshare.process.demo import seed_demo
from gridshare.recompute import run
from gridshare.recompute.inputs import active_network
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.db import transaction
from gridshare.store.envelope_blocks import decode_blocks
from gridshare.store.models import AssetDerate, SiteEnvelope
from tests.support.bodies import SEP_XML, der_capability
from tests.support.engine import FEEDER, applied_controls, der_links, device_book, site_row
from tests.support.servers import RunningServer

DEVICE = "device-1"  # bound by the demo to solar-farm-north: agreed 4000 kW export, 100 kW import


@pytest.fixture
def demo(server: RunningServer) -> Iterator[RunningServer]:
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    seed_demo(server.ctx, server.pki)
    yield server


def _report_rating(server: RunningServer, value: int, multiplier: int) -> None:
    site = site_row(server, DEVICE)
    with server.client(DEVICE) as c:
        links = der_links(c, f"/edev/{site.id}")
        r = c.put(links["DERCapability"], content=der_capability(value, multiplier), headers=SEP_XML)
        assert r.status_code == 204, r.text


def test_an_active_envelope_lifts_the_default_generation_limit_to_the_device_rating(
    demo: RunningServer,
) -> None:
    _report_rating(demo, 46, 5)  # a 4.6 MW plant behind a 4 MW export agreement
    assert Recomputer(demo.ctx).run_once("test").status == "published"
    now, offline = applied_controls(demo)
    # Generation may reach the plant's rating; the dynamic export limit is what binds.
    assert now.generation_limit_w == now.load_limit_w == 4_600_000
    assert now.export_limit_w is not None and now.export_limit_w > offline.generation_limit_w
    # With the server gone the default's gross limits apply again (the fallback export, 79 kW here).
    assert offline.generation_limit_w == offline.export_limit_w < 100_000


def test_without_a_reported_rating_the_gross_limits_are_the_agreed_maxima(demo: RunningServer) -> None:
    assert Recomputer(demo.ctx).run_once("test").status == "published"
    now, _ = applied_controls(demo)
    assert now.generation_limit_w == now.load_limit_w == 4_000_000  # the larger of 4000 kW and 100 kW


def test_fallback_valued_envelopes_keep_the_defaults_gross_limits(
    demo: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Recomputer(demo.ctx)
    assert engine.run_once("good").status == "published"

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(run, "compute_envelopes", broken)
    assert engine.run_once("broken").action == "fallback published"
    now, offline = applied_controls(demo)
    # They stand in for the default: a gross-only device must be held as it would be on it.
    assert (now.generation_limit_w, now.load_limit_w) == (offline.generation_limit_w, offline.load_limit_w)
    assert now.export_limit_w <= offline.export_limit_w


def test_sites_behind_an_outage_get_zero_gross_limits(demo: RunningServer) -> None:
    with demo.ctx.sessions() as s:
        _, nf = active_network(s, FEEDER)
    network_site = next(x for x in nf.sites if x.id == "solar-farm-north")
    feeding = next(b for b in nf.network.branches if b.to_node == network_site.node)
    with transaction(demo.ctx.sessions) as s:
        s.add(
            AssetDerate(
                asset=feeding.name,
                factor=0.0,
                from_s=demo.ctx.now_s() - 60,
                until_s=None,
                created_s=demo.ctx.now_s(),
                created_by="test",
            )
        )
    assert Recomputer(demo.ctx).run_once("outage").status == "published"
    now, _ = applied_controls(demo)
    assert (now.export_limit_w, now.import_limit_w, now.generation_limit_w, now.load_limit_w) == (0, 0, 0, 0)


def test_sets_stored_before_gross_limits_still_serve_and_are_replaced_by_new_events(
    demo: RunningServer,
) -> None:
    engine = Recomputer(demo.ctx)
    assert engine.run_once("first").status == "published"
    # What an older server wrote: the blocks alone, without the gross-limit header.
    with transaction(demo.ctx.sessions) as s:
        for row in s.execute(select(SiteEnvelope)).scalars():
            row.blocks = decode_blocks(row.blocks).tobytes()
    old = device_book(demo)
    old_now = old.control_at(demo.ctx.now_s())
    # The problem this fixes: generation falls to the default's limit, far below the envelope's export.
    assert old_now.generation_limit_w == old.default_control().generation_limit_w < old_now.export_limit_w
    old_mrids = {e.mrid for e in old.running(demo.ctx.now_s())}
    assert engine.run_once("after the upgrade").status == "published"
    new = device_book(demo)
    assert new.control_at(demo.ctx.now_s()).generation_limit_w == 4_000_000
    # Other limits under the same mRID would be a silent change of an event: these are new events.
    assert {e.mrid for e in new.running(demo.ctx.now_s())}.isdisjoint(old_mrids)
