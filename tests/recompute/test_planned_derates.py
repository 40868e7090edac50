"""A derate scheduled for later shapes the dynamic envelopes only over the intervals it covers, while
the fallback defaults count it from now (a device may sit on its default when the outage starts)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from gridshare.envelopes.planned_derates import stretches
from gridshare.process.demo import seed_demo
from gridshare.recompute.inputs import active_network
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.db import transaction
from gridshare.store.models import AssetDerate
from tests.support.engine import FEEDER, default_control, device_controls
from tests.support.servers import RunningServer

DEVICE = "device-1"  # solar-farm-north in the demo feeder
INTERVAL_S = 300
HORIZON_S = 6 * 3600


@pytest.fixture
def demo(server: RunningServer) -> Iterator[RunningServer]:
    server.ctx.settings.envelope_horizon_s = HORIZON_S
    seed_demo(server.ctx, server.pki)
    yield server


def _limits_at(controls: list[dict[str, object]], t: int) -> tuple[float, float]:
    """(export, import) W of the control a device applies at `t` (superseded ones left out)."""
    live = [c for c in controls if c["status"] != 4 and c["start"] <= t < c["start"] + c["duration"]]
    assert len(live) == 1, live
    return live[0]["export"], live[0]["import"]  # type: ignore[return-value]


def _outage(server: RunningServer, asset: str, from_s: int, until_s: int | None) -> None:
    with transaction(server.ctx.sessions) as s:
        s.add(
            AssetDerate(
                asset=asset,
                factor=0.0,
                reason="test: planned outage",
                from_s=from_s,
                until_s=until_s,
                created_s=server.ctx.now_s(),
                created_by="test",
            )
        )


def test_an_outage_two_hours_ahead_zeroes_only_the_intervals_it_covers(demo: RunningServer) -> None:
    with demo.ctx.sessions() as s:
        _, nf = active_network(s, FEEDER)
    node = next(x.node for x in nf.sites if x.id == "solar-farm-north")
    feeding = next(b.name for b in nf.network.branches if b.to_node == node)
    engine = Recomputer(demo.ctx)
    assert engine.run_once("before").status == "published"
    before = device_controls(demo, DEVICE)
    now_s = demo.ctx.now_s()
    start_s = now_s - now_s % INTERVAL_S
    outage_from_s, outage_until_s = start_s + 2 * 3600, start_s + 3 * 3600
    _outage(demo, feeding, outage_from_s, outage_until_s)
    assert engine.run_once("planned outage").status == "published"
    after = device_controls(demo, DEVICE)

    assert _limits_at(after, now_s) == _limits_at(before, now_s)  # the next interval is unchanged
    assert _limits_at(before, now_s)[0] > 0
    for t in range(start_s, start_s + HORIZON_S, INTERVAL_S):
        if outage_from_s <= t < outage_until_s:
            assert _limits_at(after, t) == (0, 0), t
        else:  # before and after the outage the network is whole again: the same envelope
            assert _limits_at(after, t) == _limits_at(before, t), t
    # The default counts the outage from now: a device that loses the server at 10:00 still holds it
    # when the outage starts.
    assert default_control(demo, DEVICE)["export"] == default_control(demo, DEVICE)["import"] == 0


def test_a_derate_partly_covering_an_interval_takes_all_of_it() -> None:
    start_s = 36_000
    ends_mid_way = SimpleNamespace(
        from_s=start_s + 2 * INTERVAL_S + 120, until_s=start_s + 3 * INTERVAL_S + 60
    )
    open_ended = SimpleNamespace(from_s=start_s + 5 * INTERVAL_S, until_s=None)
    parts = stretches([ends_mid_way, open_ended], start_s, 8, INTERVAL_S)  # type: ignore[list-item]
    assert [(p.first, p.n, p.derates) for p in parts] == [
        (0, 2, ()),
        (2, 2, (ends_mid_way,)),  # 10:12 to 10:16 of a 10:10, 10:15 pair: both intervals
        (4, 1, ()),
        (5, 3, (open_ended,)),
    ]
    assert [(p.first, p.n) for p in stretches([], start_s, 8, INTERVAL_S)] == [(0, 8)]
