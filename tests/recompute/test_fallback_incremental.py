"""Fallback defaults are recomputed and rewritten only when what they depend on changes, and a device
reporting a new rating is such a change: the watcher picks it up without any operator action.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete, func, select

from gridshare.fallback import compute_fallback
from gridshare.process.demo import seed_demo
from gridshare.recompute import failure
from gridshare.recompute.inputs import active_network
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.db import transaction
from gridshare.store.models import AssetDerate, DefaultDerControl, EnvelopeSetRecord
from gridshare.store.publication.fallback_defaults import ENGINE_DESCRIPTION
from tests.support.bodies import SEP_XML, der_capability
from tests.support.engine import FEEDER, applied_controls, default_control, der_links, site_row
from tests.support.servers import RunningServer

DEVICE = "device-1"  # solar-farm-north in the demo feeder


@pytest.fixture
def demo(server: RunningServer) -> Iterator[RunningServer]:
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    seed_demo(server.ctx, server.pki)
    yield server


def _default_versions(server: RunningServer) -> dict[int, int]:
    with server.ctx.sessions() as s:
        rows = s.execute(
            select(DefaultDerControl.site_id, DefaultDerControl.version).where(
                DefaultDerControl.site_id.is_not(None)
            )
        ).all()
    return dict(rows)  # type: ignore[arg-type]


def _count_plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = failure.plan_fallback

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(failure, "plan_fallback", counted)
    return calls


def _sets(server: RunningServer) -> int:
    with server.ctx.sessions() as s:
        return int(s.execute(select(func.count(EnvelopeSetRecord.id))).scalar_one())


def _put_rating(server: RunningServer, value: int, multiplier: int) -> None:
    site = site_row(server, DEVICE)
    with server.client(DEVICE) as c:
        links = der_links(c, f"/edev/{site.id}")
        r = c.put(links["DERCapability"], content=der_capability(value, multiplier), headers=SEP_XML)
        assert r.status_code == 204, r.text


# ---------------------------------------------------------------- item: refresh cost


def test_unchanged_inputs_are_neither_recomputed_nor_rewritten_even_after_a_restart(
    demo: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Recomputer(demo.ctx)
    assert first.run_once("first").status == "published"
    written = _default_versions(demo)
    assert written, "the first run writes every dynamic site's default"
    plans = _count_plans(monkeypatch)
    demo.clock.advance(300)  # a later run: new envelopes, same network, derates, ratings and sites
    assert first.run_once("second").status == "published"
    first.stop()  # the process ends: its publisher lock goes with it
    restarted = Recomputer(demo.ctx)  # a new process: nothing cached in memory
    demo.clock.advance(300)
    assert restarted.run_once("after a restart").status == "published"
    assert plans == [] and _default_versions(demo) == written


def test_a_new_margin_or_a_planned_derate_refreshes_the_defaults(
    demo: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("first")
    before = default_control(demo, DEVICE)
    plans = _count_plans(monkeypatch)
    demo.ctx.settings.fallback_margin_fraction = 0.2  # from 5 %
    engine.run_once("wider margin")
    wider = default_control(demo, DEVICE)
    assert plans == [1] and 0 < wider["export"] < before["export"]
    with demo.ctx.sessions() as s:
        _, nf = active_network(s, FEEDER)
    assert "zone-tx" in {b.name for b in nf.network.branches}
    # The zone transformer sets solar-farm-north's fallback (docs/fallback.md): halve it from tomorrow.
    with transaction(demo.ctx.sessions) as s:
        s.add(
            AssetDerate(
                asset="zone-tx",
                factor=0.5,
                from_s=demo.ctx.now_s() + 86400,
                until_s=None,
                created_s=demo.ctx.now_s(),
                created_by="test",
            )
        )
    engine.run_once("planned derate")
    assert plans == [1, 1] and default_control(demo, DEVICE)["export"] < wider["export"]


def test_a_default_an_operator_deleted_is_recreated_although_no_limit_changed(demo: RunningServer) -> None:
    engine = Recomputer(demo.ctx)
    engine.run_once("first")
    expected = default_control(demo, DEVICE)
    site = site_row(demo, DEVICE)
    with transaction(demo.ctx.sessions) as s:
        s.execute(delete(DefaultDerControl).where(DefaultDerControl.site_id == site.id))
    engine.run_once("again")
    assert default_control(demo, DEVICE) == expected and expected["description"] == ENGINE_DESCRIPTION


# ---------------------------------------------------------------- item: device ratings as a trigger


def test_a_device_reporting_a_new_rating_refreshes_its_default_through_the_watcher(
    demo: RunningServer,
) -> None:
    engine = Recomputer(demo.ctx)
    assert engine.run_once("first").status == "published"
    before = default_control(demo, DEVICE)
    runs = _sets(demo)
    engine.watch()
    assert _sets(demo) == runs, "nothing changed: the watcher does not recompute"

    _put_rating(demo, 90, 5)  # the plant reports 9 MW, more than twice its 4 MW agreement
    engine.watch()  # one poll of the change watcher, no operator action
    assert _sets(demo) == runs + 1
    with demo.ctx.sessions() as s:
        _, nf = active_network(s, FEEDER)
    expected = compute_fallback(
        nf.network,
        list(nf.sites),
        margin_fraction=demo.ctx.settings.fallback_margin_fraction,
        rated_w={"solar-farm-north": 9_000_000.0},
    ).limits["solar-farm-north"]
    after = default_control(demo, DEVICE)
    # setGradW is a percentage of the rating: a larger rating at a voltage-bound node, a lower percentage
    assert after["grad"] == expected.set_grad_w_hundredths < before["grad"]
    now, _ = applied_controls(demo)
    assert now.generation_limit_w == 9_000_000

    _put_rating(demo, 90, 5)  # the same document again, as a device re-sends it: no new run
    engine.watch()
    assert _sets(demo) == runs + 1
