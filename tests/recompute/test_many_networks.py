"""Many networks in one store: each recomputed, published and failed on its own; sites move between them.

The demo feeder is loaded as in a fresh `gridshare serve` (its dev devices bound to its dynamic sites),
and a second network, "east", beside it: the same feeder under another name with its own NMIs.
"""

from __future__ import annotations

import copy
from datetime import datetime

import pytest
import yaml
from sqlalchemy import select

from gridshare.process.demo import DEMO_FILE, seed_demo
from gridshare.recompute.run import RunInputs
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.change_feed import change_versions, envelope_site_key, network_key
from gridshare.store.db import publication_value, transaction
from gridshare.store.models import AssetDerate, SiteEnvelope
from gridshare.store.publication.envelopes import current_set_id
from gridshare.store.publication.network_docs import (
    NetworkConflict,
    active_document,
    active_names,
    retire_network,
    store_network,
)
from gridshare.store.publication.status import DYNAMIC, read_statuses
from gridshare.store.queries.envelopes import envelope_network
from tests.support.engine import FEEDER, HORIZON_S, device_controls, site_row
from tests.support.servers import RunningServer

EAST = "east"
DEVICE = "device-1"


def _east_document(keep_nmi: str | None = None) -> dict[str, object]:
    """The demo feeder as network "east", every NMI renamed except `keep_nmi` (which then moves)."""
    doc = copy.deepcopy(yaml.safe_load(DEMO_FILE.read_text()))
    doc["name"] = EAST
    for site in doc["sites"]:
        if site.get("nmi") and site["nmi"] != keep_nmi:
            site["nmi"] = f"E{site['nmi']}"[:32]
    return doc  # type: ignore[no-any-return]


@pytest.fixture
def two(server: RunningServer) -> RunningServer:
    server.ctx.settings.envelope_horizon_s = HORIZON_S
    seed_demo(server.ctx, server.pki)
    with transaction(server.ctx.sessions) as s:
        store_network(s, _east_document(), "test", server.ctx.now_s())
    return server


def _sets(server: RunningServer) -> dict[str, int | None]:
    with server.ctx.sessions() as s:
        return {name: current_set_id(s, name) for name in (FEEDER, EAST)}


def _key(server: RunningServer, key: str) -> int:
    with server.ctx.sessions() as s:
        return change_versions(s, [key])[key]


def test_every_network_is_published_and_reported_on_its_own(two: RunningServer) -> None:
    with two.ctx.sessions() as s:
        assert active_names(s) == sorted([EAST, FEEDER])
    outcome = Recomputer(two.ctx).run_once("test")
    assert outcome.status == "published", outcome.detail
    sets = _sets(two)
    assert sets[FEEDER] is not None and sets[EAST] is not None and sets[FEEDER] != sets[EAST]
    with two.ctx.sessions() as s:
        states = {st.feeder: st.state for st in read_statuses(s)}
        assert states == {FEEDER: DYNAMIC, EAST: DYNAMIC}
        # every site of each network is in its own set only
        east_sites = set(
            s.execute(select(SiteEnvelope.site_id).where(SiteEnvelope.set_id == sets[EAST])).scalars()
        )
    assert site_row(two, DEVICE).id not in east_sites  # the dev devices are bound to the demo feeder's NMIs
    assert device_controls(two, DEVICE), "the device on the demo feeder gets its envelope"


def test_a_derate_on_one_network_recomputes_that_network_only(two: RunningServer) -> None:
    engine = Recomputer(two.ctx)
    assert engine.run_once("first").status == "published"
    before = _sets(two)
    demo_key = _key(two, network_key(FEEDER))
    body_before = device_controls(two, DEVICE)
    with two.ctx.sessions() as s:
        east = active_document(s, EAST)
        assert east is not None
        asset = east.document["network"]["branches"][1]["name"]
    with transaction(two.ctx.sessions) as s:
        now_s = two.ctx.now_s()
        s.add(
            AssetDerate(network=EAST, asset=asset, factor=0.5, from_s=now_s, created_s=now_s, created_by="op")
        )
    engine.watch()  # what the running engine does every change_poll_s
    after = _sets(two)
    assert after[EAST] != before[EAST], "east was recomputed after its derate"
    assert after[FEEDER] == before[FEEDER], "the demo feeder was left alone"
    # devices on the demo feeder keep their cached bodies: nothing they depend on moved
    assert _key(two, network_key(FEEDER)) == demo_key
    assert device_controls(two, DEVICE) == body_before


def test_a_publication_of_one_network_leaves_every_other_devices_cached_body_valid(
    two: RunningServer,
) -> None:
    engine = Recomputer(two.ctx)
    assert engine.run_once("first").status == "published"
    body_before = device_controls(two, DEVICE)
    with two.ctx.sessions() as s:
        generation = publication_value(s)  # what every cached body is checked against on each poll
    for _ in range(2):  # the second republication changes only its set id in east's feeder status
        assert engine.run_once("again", network=EAST).status == "published"
    with two.ctx.sessions() as s:
        assert publication_value(s) == generation, "east's publication invalidated the demo devices' caches"
    assert device_controls(two, DEVICE) == body_before


def test_a_failure_on_one_network_leaves_the_other_dynamic(two: RunningServer) -> None:
    def forecast(inputs: RunInputs, start: datetime, interval_s: int, n: int) -> None:
        if inputs.feeder == EAST:
            raise RuntimeError("the east forecast service is down")
        return None

    two.ctx.settings.failure_policy = "fallback"
    outcome = Recomputer(two.ctx, forecast_source=forecast).run_once("test")
    assert outcome.status == "failed"
    assert EAST in outcome.detail and "published" not in outcome.detail.split(EAST)[0]
    with two.ctx.sessions() as s:
        states = {st.feeder: st for st in read_statuses(s)}
    assert states[FEEDER].state == DYNAMIC
    assert states[EAST].state == "fallback" and "forecast" in states[EAST].reason
    sets = _sets(two)
    assert sets[FEEDER] is not None and sets[EAST] is not None  # east's sites are on fallback envelopes


def test_a_site_that_moves_gets_its_envelope_from_its_new_network_only(two: RunningServer) -> None:
    engine = Recomputer(two.ctx)
    assert engine.run_once("first").status == "published"
    site = site_row(two, DEVICE)
    assert site.nmi is not None
    with two.ctx.sessions() as s:
        assert envelope_network(s, site.id) == FEEDER
    moves_before = _key(two, envelope_site_key(site.id))

    # A switching change: east now supplies the device's connection point.
    with transaction(two.ctx.sessions) as s, pytest.raises(NetworkConflict) as refused:
        store_network(s, _east_document(keep_nmi=site.nmi), "ops", two.ctx.now_s())
    assert refused.value.taken == {site.nmi: FEEDER}
    with transaction(two.ctx.sessions) as s:
        store_network(s, _east_document(keep_nmi=site.nmi), "ops", two.ctx.now_s(), move_sites=True)
    with two.ctx.sessions() as s:
        demo_doc = active_document(s, FEEDER)
        assert demo_doc is not None and site.nmi not in {x.get("nmi") for x in demo_doc.document["sites"]}

    assert engine.run_once("east only", network=EAST).status == "published"
    with two.ctx.sessions() as s:
        assert envelope_network(s, site.id) == EAST
        demo_set = current_set_id(s, FEEDER)
        held_by_demo = s.get(SiteEnvelope, (demo_set, site.id))
    assert held_by_demo is None, "the old network's current set no longer carries the site"
    assert _key(two, envelope_site_key(site.id)) > moves_before  # the device's cached bodies re-render
    assert device_controls(two, DEVICE), "the device still has an envelope, now east's"

    assert engine.run_once("both").status == "published"
    with two.ctx.sessions() as s:
        assert envelope_network(s, site.id) == EAST


def test_a_retired_network_publishes_nothing_and_is_not_recomputed(two: RunningServer) -> None:
    engine = Recomputer(two.ctx)
    assert engine.run_once("first").status == "published"
    with transaction(two.ctx.sessions) as s:
        assert retire_network(s, EAST, two.ctx.now_s())
        assert not retire_network(s, EAST, two.ctx.now_s())
    with two.ctx.sessions() as s:
        assert current_set_id(s, EAST) is None
        assert {st.feeder for st in read_statuses(s)} == {FEEDER}
    assert engine.run_once("after").status == "published"
    assert set(engine.networks()) == {FEEDER}
    assert _sets(two)[EAST] is None


def test_a_network_left_without_sites_by_a_move_is_still_recomputed_cleanly(two: RunningServer) -> None:
    """A switching change can take every site of a network away: it keeps publishing (nothing to carry)
    rather than failing, and the sites publish from their new network."""
    with two.ctx.sessions() as s:
        demo = active_document(s, FEEDER)
        assert demo is not None
        every_nmi = [x["nmi"] for x in demo.document["sites"] if x.get("nmi")]
    doc = _east_document()
    doc["sites"] = [
        *doc["sites"],
        *[dict(x, id=f"moved-{i}") for i, x in enumerate(demo.document["sites"]) if x.get("nmi")],
    ]  # type: ignore[list-item]
    with transaction(two.ctx.sessions) as s:
        store_network(s, doc, "ops", two.ctx.now_s(), move_sites=True)
    with two.ctx.sessions() as s:
        left = active_document(s, FEEDER)
        assert left is not None and not [x for x in left.document["sites"] if x.get("nmi") in every_nmi]
    outcome = Recomputer(two.ctx).run_once("after the move")
    assert outcome.status == "published", outcome.detail
    site = site_row(two, DEVICE)
    with two.ctx.sessions() as s:
        assert envelope_network(s, site.id) == EAST
