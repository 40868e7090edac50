"""The operator's connection agreement (PUT /sites/{id}/agreement) is what the engine publishes by.

The network file gives every site its agreement; an agreement the operator writes for a registered
site takes precedence over it (grid/agreement_records.py), and the engine notices the write without
being asked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree
from sqlalchemy import select

from gridshare.process.demo import seed_demo
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.models import Site
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


def _site_id(server: RunningServer, name: str) -> int:
    me = server.pki.client(name)
    with server.ctx.sessions() as s:
        return s.execute(select(Site.id).where(Site.lfdi == me.lfdi)).scalar_one()


def _export_limits_w(server: RunningServer, name: str) -> list[float]:
    """The opModExpLimW of every scheduled or active DERControl the device reads over mTLS."""
    site_id = _site_id(server, name)
    with server.client(name) as c:
        root = etree.fromstring(c.get(f"/edev/{site_id}/derp/1/derc", params={"l": 500}).content)
    out = []
    for ctl in root:
        if int(ctl.findtext("s:EventStatus/s:currentStatus", namespaces=NS)) not in (0, 1):
            continue  # cancelled or superseded by the newer set
        el = ctl.find("s:DERControlBase/c:opModExpLimW", NS)
        assert el is not None
        value = int(el.findtext("s:value", namespaces=NS))
        out.append(value * 10 ** int(el.findtext("s:multiplier", namespaces=NS)))
    return out


def test_an_operator_written_agreement_changes_the_published_envelope(
    demo: RunningServer, api: OperatorApi
) -> None:
    engine = Recomputer(demo.ctx)
    assert engine.run_once("first").status == "published"
    before = _export_limits_w(demo, "device-1")
    assert max(before) > 1_500_000, "the demo's solar farm may export more than 1.5 MW at first"

    site_id = _site_id(demo, "device-1")
    with api.client() as c:
        r = c.put(f"/sites/{site_id}/agreement", json={"kind": "limited", "export_limit_w": 1_500_000})
        assert r.status_code == 200, r.text

    engine.watch()  # the engine sees the operator's write on its own and recomputes
    after = _export_limits_w(demo, "device-1")
    assert after and max(after) <= 1_500_000

    with api.client() as c:
        assert c.delete(f"/sites/{site_id}/agreement").status_code == 204
    engine.watch()  # back to the network file's agreement
    assert max(_export_limits_w(demo, "device-1")) == max(before)
