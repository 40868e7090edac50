"""Recomputation end to end: demo feeder -> envelopes -> DERControls a real device reads over mTLS."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest
from lxml import etree
from sqlalchemy import select

from gridshare.envelopes.compute import compute_envelopes
from gridshare.grid.agreements import Dynamic
from gridshare.grid.netfile import parse_network_document
from gridshare.process.demo import seed_demo
from gridshare.recompute.inputs import active_network
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.db import transaction
from gridshare.store.models import AssetDerate, EnvelopeSetRecord, Site, SiteEnvelope
from gridshare.store.publication import envelopes as publish_module
from gridshare.store.publication.envelopes import current_set_id
from tests.support.engine import FEEDER, device_controls
from tests.support.servers import RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


def watts(el: etree._Element | None) -> float | None:
    if el is None:
        return None
    return int(el.findtext("s:value", namespaces=NS)) * 10 ** int(el.findtext("s:multiplier", namespaces=NS))


@pytest.fixture
def demo(server: RunningServer) -> RunningServer:
    server.ctx.settings.envelope_horizon_s = 6 * 3600  # a quarter day keeps the tests quick
    seed_demo(server.ctx, server.pki)
    return server


def _device_site(server: RunningServer, name: str = "device-1") -> tuple[Site, str]:
    """The store site of a dev device and the demo site id its NMI binds it to."""
    me = server.pki.client(name)
    with server.ctx.sessions() as s:
        site = s.execute(select(Site).where(Site.lfdi == me.lfdi)).scalar_one()
        _, nf = active_network(s, FEEDER)
    return site, next(x.id for x in nf.sites if x.nmi == site.nmi)


def test_published_controls_match_the_engine_and_cover_the_horizon(demo: RunningServer) -> None:
    outcome = Recomputer(demo.ctx).run_once("test")
    assert outcome.status == "published", outcome.detail
    controls = device_controls(demo)
    assert controls, "the device sees its envelope"
    # recompute the same envelopes independently of the publisher and compare what the device got
    _site, network_site_id = _device_site(demo)
    with demo.ctx.sessions() as s:
        _, nf = active_network(s, FEEDER)
    now_s = int(demo.clock.now())
    start = datetime.fromtimestamp(now_s - now_s % 300, UTC)
    env = compute_envelopes(nf.network, nf.sites, start, 6 * 3600, 300, "pro-rata")
    col = env.site_ids.index(network_site_id)
    me = next(x for x in nf.sites if x.id == network_site_id)
    settings = demo.ctx.settings
    step_w = max(
        settings.envelope_resolution_w,
        settings.envelope_resolution_pct / 100 * max(me.max_export_w, me.max_import_w),
    )
    starts = np.array([int(t.timestamp()) for t in env.interval_starts])
    assert controls[0]["start"] == starts[0]
    assert sum(c["duration"] for c in controls) == 6 * 3600  # contiguous cover, no gaps or overlaps
    for c in controls:
        inside = (starts >= c["start"]) & (starts < c["start"] + c["duration"])
        exact_exp = env.export_limit_w[inside, col]
        exact_imp = env.import_limit_w[inside, col]
        # never more than the engine allowed in any interval of the block; less by at most the
        # documented rounding step (100 W or 1 % of the site's size) plus the Int16 multiplier step
        assert c["export"] <= exact_exp.min() + 1e-6 and exact_exp.min() - c["export"] < step_w + 10**3
        assert c["import"] <= exact_imp.min() + 1e-6
    for a, b in itertools.pairwise(controls):  # equal neighbours were merged into one control
        assert (a["export"], a["import"]) != (b["export"], b["import"])


def test_republishing_the_same_envelopes_changes_nothing_a_device_sees(demo: RunningServer) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("first")
    before = device_controls(demo)
    second = engine.run_once("second")
    assert second.status == "published" and second.summary.blocks_new == 0
    assert device_controls(demo) == before


def test_derate_lowers_the_limits_of_sites_behind_the_asset(demo: RunningServer) -> None:
    _site, network_site_id = _device_site(demo)
    with demo.ctx.sessions() as s:
        _, nf = active_network(s, FEEDER)
    node = next(x.node for x in nf.sites if x.id == network_site_id)
    feeding = next(b.name for b in nf.network.branches if b.to_node == node)
    engine = Recomputer(demo.ctx)
    engine.run_once("before")
    before = device_controls(demo)
    with transaction(demo.ctx.sessions) as s:
        s.add(
            AssetDerate(
                asset=feeding,
                factor=0.05,
                reason="test: hot spot",
                from_s=0,
                until_s=None,
                created_s=demo.ctx.now_s(),
                created_by="test",
            )
        )
    engine.run_once("derate")  # in the same second: the new set must still be the newer one
    after = [c for c in device_controls(demo) if c["status"] != 4]
    assert sum(c["export"] * c["duration"] for c in after) < sum(c["export"] * c["duration"] for c in before)
    # interval by interval, nothing got more room than before the derate
    for t in range(before[0]["start"], before[0]["start"] + 6 * 3600, 300):
        assert _limit_at(after, t, "export") <= _limit_at(before, t, "export")


def _limit_at(controls: list[dict[str, object]], t: int, key: str) -> float:
    return next(c[key] for c in controls if c["start"] <= t < c["start"] + c["duration"])


def test_a_second_instance_does_not_publish_while_the_first_holds_the_lock(demo: RunningServer) -> None:
    first = Recomputer(demo.ctx, holder="instance-a")  # alive (and holding the lock) to the end
    assert first.run_once("a").status == "published"
    other = Recomputer(demo.ctx, holder="instance-b").run_once("b")
    assert other.status == "skipped"
    with demo.ctx.sessions() as s:
        statuses = [r.status for r in s.execute(select(EnvelopeSetRecord)).scalars()]
    assert statuses == ["published"]
    first.stop()


def test_a_failure_while_publishing_leaves_the_old_set_whole(demo: RunningServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine = Recomputer(demo.ctx)
    engine.run_once("good")
    before = device_controls(demo)
    with demo.ctx.sessions() as s:
        set_before = current_set_id(s, FEEDER)

    def broken(session, keys):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish_module, "bump_changes", broken)
    demo.clock.advance(3600)  # a new horizon: the publisher would change rows
    outcome = engine.run_once("doomed")
    assert outcome.status == "failed"
    with demo.ctx.sessions() as s:
        assert current_set_id(s, FEEDER) == set_before
        assert s.query(SiteEnvelope).filter(SiteEnvelope.set_id != set_before).count() == 0
        assert [
            r.status for r in s.execute(select(EnvelopeSetRecord).order_by(EnvelopeSetRecord.id)).scalars()
        ] == ["published", "failed"]
    demo.clock.advance(-3600)
    assert device_controls(demo) == before


def test_no_network_is_a_skip_not_a_crash(server: RunningServer) -> None:
    assert Recomputer(server.ctx).run_once("empty").status == "skipped"


def test_demo_document_is_a_valid_network_file() -> None:
    import yaml

    from gridshare.process.demo import DEMO_FILE

    nf = parse_network_document(yaml.safe_load(DEMO_FILE.read_text()))
    assert sum(1 for s in nf.sites if isinstance(s.agreement, Dynamic)) >= 3
