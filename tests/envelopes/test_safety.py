"""Allocated envelopes plus forecasts never overload the network, checked independently.

The checker below walks the tree itself (DistFlow recursion, linearised: flows are sums of
downstream injections; V_child = V_parent + (R + X tan phi) / V_base^2 * reverse flow) rather
than reusing the sensitivity matrices of the code under test.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridshare.envelopes.compute import POLICIES, compute_envelopes
from gridshare.envelopes.forecast import Forecast
from gridshare.grid.agreements import Dynamic, Limited
from gridshare.grid.netfile import load_network_file
from gridshare.grid.network import Branch, Network, Node, Rating, Site
from gridshare.grid.units import W_PER_KW as KW
from tests.support.envelope_cases import (
    DEMO,
    FAST,
    START,
    demo_profile_forecast,
    radial_cases,
    violations,
)


@pytest.mark.parametrize("policy", POLICIES)
def test_demo_feeder_envelopes_respect_every_rating_and_voltage_limit(policy: str) -> None:
    nf = load_network_file(DEMO)
    sites = list(nf.sites)
    start = datetime(2026, 6, 21, 4, tzinfo=UTC)  # midnight local, midsummer
    fc = demo_profile_forecast(nf.network, sites, start, 288)
    es = compute_envelopes(nf.network, sites, start, 86400, 300, policy, forecasts=fc)
    assert es.infeasibilities == ()
    assert violations(nf.network, sites, es, fc) == []
    # Congested at midday: the zone transformer and distribution transformers bind around noon.
    noon = [t for t, s in enumerate(es.interval_starts) if 16 <= s.hour < 18]  # 12:00-14:00 EDT
    export = es.constraints["export"]
    binding_at_noon = {export.names[c] for c in np.flatnonzero(export.binding[noon].any(axis=0))}
    assert "thermal:zone-tx" in binding_at_noon
    assert binding_at_noon & {"thermal:dt-11", "thermal:dt-12", "voltage:f2-d"}
    # Dynamic sites are held below their agreed maxima at noon, never below their floors.
    farm = es.site_ids.index("solar-farm-north")
    assert es.export_limit_w[noon, farm].max() < 4_000_000
    for s, site in enumerate(sites):
        if isinstance(site.agreement, Dynamic):
            assert np.all(es.export_limit_w[:, s] >= site.agreement.export_floor_w - 1e-6)
            assert np.all(es.import_limit_w[:, s] >= site.agreement.import_floor_w - 1e-6)
            assert np.all(es.export_limit_w[:, s] <= site.max_export_w + 1e-6)


def test_demo_fixed_sites_are_held_at_their_agreed_limits() -> None:
    nf = load_network_file(DEMO)
    start = datetime(2026, 6, 21, 4, tzinfo=UTC)
    es = compute_envelopes(nf.network, list(nf.sites), start, 3600, 300)
    limits = dict(zip(es.site_ids, es.export_limit_w[0], strict=True))
    assert limits["res-12-1"] == 5_000  # limited to 5 kW export
    assert limits["solar-farm-ridge"] == 1_200_000  # staggered: 1.2 MW until September 2026
    assert limits["school-pv"] == 250_000  # firm: its agreed maximum
    assert limits["res-13-4"] == 8_000  # scheduled: 8 kW in June
    imports = dict(zip(es.site_ids, es.import_limit_w[0], strict=True))
    assert imports["cold-store"] == 800_000  # scheduled: 800 kW import in June


# ---------------------------------------------------------------- random radial networks


@FAST
@given(case=radial_cases(), policy=st.sampled_from(POLICIES))
def test_random_radial_networks_are_never_overloaded(
    case: tuple[Network, list[Site], Forecast], policy: str
) -> None:
    network, sites, fc = case
    es = compute_envelopes(network, sites, START, 600, 300, policy, forecasts=fc)
    assert violations(network, sites, es, fc) == []


def _upgrade(network: Network, index: int, factor: float) -> Network:
    """The same network with one branch's rating multiplied by `factor` in both directions."""
    b = network.branches[index]
    assert b.rating is not None
    export_w = None if b.rating.export_w is None else b.rating.export_w * factor
    import_w = None if b.rating.import_w is None else b.rating.import_w * factor
    bigger = replace(b, rating=Rating(export_w, import_w))
    return replace(network, branches=(*network.branches[:index], bigger, *network.branches[index + 1 :]))


@FAST
@given(
    case=radial_cases(),
    policy=st.sampled_from(("pro-rata", "tranche", "lifo")),
    factor=st.floats(1.01, 3.0),
    data=st.data(),
)
def test_a_bigger_rating_never_lowers_a_limit_behind_the_upgraded_asset(
    case: tuple[Network, list[Site], Forecast], policy: str, factor: float, data: st.DataObject
) -> None:
    # Only sites downstream of the asset are promised more: upgrading one transformer lets its
    # sites compete harder for a shared upstream asset, which can (fairly) lower a site elsewhere.
    # Upgrading the asset every site sits behind therefore never lowers anyone's limit.
    network, sites, fc = case
    rated = [i for i, b in enumerate(network.branches) if b.rating is not None]
    if not rated:
        return
    index = data.draw(st.sampled_from(rated))
    behind = set(network.downstream_nodes(network.branches[index].name))
    cols = [k for k, s in enumerate(sites) if s.node in behind]
    before = compute_envelopes(network, sites, START, 600, 300, policy, forecasts=fc)
    after = compute_envelopes(_upgrade(network, index, factor), sites, START, 600, 300, policy, forecasts=fc)
    if before.infeasibilities or after.infeasibilities:
        return  # floors already overload something: limits are the floors, nothing to compare
    for name in ("export_limit_w", "import_limit_w"):
        old, new = getattr(before, name)[:, cols], getattr(after, name)[:, cols]
        assert np.all(new >= old - 1e-6 * max(1.0, float(np.abs(old).max(initial=0.0)))), name


@FAST
@given(case=radial_cases(), factor=st.floats(1.01, 3.0), data=st.data())
def test_a_bigger_rating_never_lowers_the_max_total(
    case: tuple[Network, list[Site], Forecast], factor: float, data: st.DataObject
) -> None:
    # max-total maximises the sum, not anyone's share: the sum is what must not drop.
    network, sites, fc = case
    rated = [i for i, b in enumerate(network.branches) if b.rating is not None]
    if not rated:
        return
    index = data.draw(st.sampled_from(rated))
    before = compute_envelopes(network, sites, START, 600, 300, "max-total", forecasts=fc)
    after = compute_envelopes(
        _upgrade(network, index, factor), sites, START, 600, 300, "max-total", forecasts=fc
    )
    if before.infeasibilities or after.infeasibilities:
        return
    for name in ("export_limit_w", "import_limit_w"):
        old, new = getattr(before, name).sum(axis=1), getattr(after, name).sum(axis=1)
        assert np.all(new >= old * (1 - 1e-5) - 1e-3), name


def test_fixed_flows_that_overload_an_asset_are_reported_not_hidden() -> None:
    net = Network(
        (Node("a"), Node("b")),
        (Branch("ab", "a", "b", r_ohm=1, base_kv=12.47, rating=Rating(100 * KW, 100 * KW)),),
    )
    firm = Site("s", "b", Limited(export_w=150 * KW), max_export_w=150 * KW, max_import_w=50 * KW)
    es = compute_envelopes(net, [firm], START, 600, 300)
    assert es.export_limit_w[:, 0].tolist() == [150_000, 150_000]  # its agreement, unchanged
    assert [(i.direction, i.constraint, i.excess) for i in es.infeasibilities] == [
        ("export", "thermal:ab", pytest.approx(50_000)),
        ("export", "thermal:ab", pytest.approx(50_000)),
    ]
