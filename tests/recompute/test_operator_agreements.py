"""The operator's connection agreement (PUT /sites/{id}/agreement) is what the engine publishes by.

The network file gives every site its agreement; an agreement the operator writes for a registered
site takes precedence over it (grid/agreement_records.py), and the engine notices the write without
being asked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridshare.process.demo import seed_demo
from gridshare.recompute.scheduler import Recomputer
from tests.support.engine import export_limits_w, site_id_of
from tests.support.operator_api import OperatorApi, running_operator_api
from tests.support.servers import RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


@pytest.fixture
def demo(server: RunningServer) -> RunningServer:
    server.ctx.settings.envelope_horizon_s = 2 * 3600
    seed_demo(server.ctx, server.pki)
    return server


@pytest.fixture
def api(demo: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(demo.ctx) as running:
        yield running


def test_an_operator_written_agreement_changes_the_published_envelope(
    demo: RunningServer, api: OperatorApi
) -> None:
    engine = Recomputer(demo.ctx)
    assert engine.run_once("first").status == "published"
    before = export_limits_w(demo, "device-1")
    assert max(before) > 1_500_000, "the demo's solar farm may export more than 1.5 MW at first"

    site_id = site_id_of(demo, "device-1")
    with api.client() as c:
        r = c.put(f"/sites/{site_id}/agreement", json={"kind": "limited", "export_limit_w": 1_500_000})
        assert r.status_code == 200, r.text

    engine.watch()  # the engine sees the operator's write on its own and recomputes
    after = export_limits_w(demo, "device-1")
    assert after and max(after) <= 1_500_000

    with api.client() as c:
        assert c.delete(f"/sites/{site_id}/agreement").status_code == 204
    engine.watch()  # back to the network file's agreement
    assert max(export_limits_w(demo, "device-1")) == max(before)
