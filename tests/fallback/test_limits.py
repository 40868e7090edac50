"""Fallback limits: safe under the stated worst case (checked independently), never above the engine.

The checker walks the tree itself (flows are sums of downstream injections; a child's voltage is its
parent's plus (R + X tan phi) / V_base^2 times the reverse flow; a regulator holds its node), and
builds the worst case from the network file's numbers directly, so it shares no code with `fallback/`
beyond the data classes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridshare.envelopes.compute import EnvelopeSet, compute_envelopes
from gridshare.envelopes.forecast import LOAD_SHAPES
from gridshare.fallback import RampLimits, WorstCase, compute_fallback, peak_agreed_w, ramp_rates
from gridshare.grid.agreements import Dynamic, Firm, Limited, Scheduled, Staggered
from gridshare.grid.examples import demo_feeder_path
from gridshare.grid.netfile import load_network_file
from gridshare.grid.network import Branch, Network, Node, Rating, Site
from gridshare.grid.units import W_PER_KW as KW
from tests.support.strategies import radial_networks, site_lists
from tests.support.tree_walk import walk

DEMO = demo_feeder_path()
RTOL = 1e-6


def _fixed_peak_w(site: Site) -> tuple[float, float]:
    """The highest agreed export and import of a non-dynamic site, from its fields."""
    a, mx, mi = site.agreement, site.max_export_w, site.max_import_w
    if isinstance(a, Firm):
        return mx, mi
    if isinstance(a, Limited):
        return min(a.export_w if a.export_w is not None else mx, mx), min(
            a.import_w if a.import_w is not None else mi, mi
        )
    if isinstance(a, Scheduled):
        e = mx if a.export_w is None else min(float(np.max(a.export_w)), mx)
        i = mi if a.import_w is None else min(float(np.max(a.import_w)), mi)
        return e, i
    assert isinstance(a, Staggered)
    e = max(min(v if v is not None else mx, mx) for v in (a.before_export_w, a.after_export_w))
    i = max(min(v if v is not None else mi, mi) for v in (a.before_import_w, a.after_import_w))
    return e, i


def worst_case_violations(
    network: Network, sites: list[Site], limits: dict[str, tuple[float, float]]
) -> list[str]:
    """Every rating or voltage bound the worst case breaks with dynamic sites at `limits` (export, import).

    A constraint that fixed flows alone already break is only a violation if a dynamic site behind it
    was given anything in that direction.
    """
    regulated = {b.to_node for b in network.branches if b.regulate_pu is not None}
    root = next(n.name for n in network.nodes if n.name not in {b.to_node for b in network.branches})
    found: list[str] = []
    for direction, sign in (("export", 1.0), ("import", -1.0)):
        fixed: dict[str, float] = {}
        for n in network.nodes:
            load = n.load_w * (min(LOAD_SHAPES[n.load_profile]) if direction == "export" else 1.0)
            pv = n.pv_w if direction == "export" else 0.0
            fixed[n.name] = pv - load
        for s in sites:
            if not isinstance(s.agreement, Dynamic):
                e, i = _fixed_peak_w(s)
                fixed[s.node] += e if direction == "export" else -i
        with_flex = dict(fixed)
        given_w: dict[str, float] = {}
        for s in sites:
            if isinstance(s.agreement, Dynamic):
                w = limits[s.id][0 if direction == "export" else 1]
                with_flex[s.node] += sign * w
                given_w[s.node] = given_w.get(s.node, 0.0) + w
        flows0, volts0 = walk(network, fixed)
        flows, volts = walk(network, with_flex)
        flows_given, _ = walk(network, given_w)
        for b in network.branches:
            rating = None if b.rating is None else getattr(b.rating, f"{direction}_w")
            if rating is None:
                continue
            limit = rating * (1 + RTOL) + 1e-6
            if sign * flows[b.name] > limit and (sign * flows0[b.name] <= limit or flows_given[b.name] > 0):
                found.append(f"{direction} thermal:{b.name}: {sign * flows[b.name]:.1f} W > {rating:.1f} W")
        for n in network.nodes:
            if n.name == root or n.name in regulated:
                continue
            bound = n.v_max_pu if direction == "export" else n.v_min_pu
            if bound is None:
                continue
            over = (volts[n.name] - bound) * sign > 1e-9
            fixed_over = (volts0[n.name] - bound) * sign > 1e-9
            if over and not (fixed_over and volts[n.name] == volts0[n.name]):
                found.append(f"{direction} voltage:{n.name}: {volts[n.name]:.6f} vs {bound}")
    return found


def _as_pairs(fs) -> dict[str, tuple[float, float]]:  # type: ignore[no-untyped-def]
    return {k: (v.export_w, v.import_w) for k, v in fs.limits.items()}


# ---------------------------------------------------------------- the demo feeder


def test_demo_fallback_is_safe_and_explained() -> None:
    nf = load_network_file(DEMO)
    sites = list(nf.sites)
    fs = compute_fallback(nf.network, sites, margin_fraction=0.05)
    dynamic = {s.id for s in sites if isinstance(s.agreement, Dynamic)}
    assert set(fs.limits) == dynamic
    assert worst_case_violations(nf.network, sites, _as_pairs(fs)) == []
    farm = fs.limits["solar-farm-north"]
    assert 0 < farm.export_w < 4_000_000 and farm.export_set_by.constraint == "thermal:zone-tx"
    assert farm.generation_w == farm.export_w and farm.load_w == farm.import_w
    # dt-11's own uncontrolled PV and its firm neighbour overload it in the worst case: nothing for its DER
    assert fs.limits["res-11-2"].export_w == 0 and fs.limits["res-11-2"].export_set_by.kind == "overloaded"
    assert not fs.limits["res-11-2"].export_floor_kept
    assert fs.limits["ev-depot"].import_set_by.kind == "agreement"
    text = fs.limits["res-12-2"].explain()
    assert "import" in text and "thermal:dt-12" in text and "setGradW" in text
    for limit in fs.limits.values():
        assert 1 <= limit.set_grad_w_hundredths <= 10_000


def test_margin_and_a_derate_only_lower_fallback_limits() -> None:
    nf = load_network_file(DEMO)
    sites = list(nf.sites)
    base = compute_fallback(nf.network, sites)
    tight = compute_fallback(nf.network, sites, margin_fraction=0.2)
    for k, v in base.limits.items():
        assert tight.limits[k].export_w <= v.export_w and tight.limits[k].import_w <= v.import_w
    branches = tuple(
        b if b.name != "zone-tx" else replace(b, rating=Rating(5000.0 * KW, 8000.0 * KW))
        for b in nf.network.branches
    )
    derated = compute_fallback(replace(nf.network, branches=branches), sites)
    assert derated.limits["solar-farm-north"].export_w < base.limits["solar-farm-north"].export_w


def test_fixed_sites_count_at_their_highest_agreed_limit() -> None:
    by_id = {s.id: s for s in load_network_file(DEMO).sites}
    assert peak_agreed_w(by_id["res-13-4"])[0] == 8_000  # scheduled: 8 kW in its best months
    assert peak_agreed_w(by_id["solar-farm-ridge"])[0] == 3_000_000  # staggered: the later, higher limit
    assert peak_agreed_w(by_id["res-12-1"]) == (5_000, 15_000)  # limited export, import at the maximum


def test_floors_are_kept_where_the_worst_case_carries_them() -> None:
    nodes = (Node("src", None, None), Node("a", v_max_pu=None, v_min_pu=None, pv_w=50 * KW))
    net = Network(nodes, (Branch("tx", "src", "a", rating=Rating(100.0 * KW, 100.0 * KW)),))
    sites = [
        Site("x", "a", Dynamic(export_floor_w=30 * KW), 100 * KW, 10 * KW),
        Site("y", "a", Dynamic(), 100 * KW, 10 * KW),
    ]
    fs = compute_fallback(net, sites)
    # 50 kW of room: x keeps its 30 kW floor and both share the remaining 20 kW pro-rata
    assert fs.limits["x"].export_w == 40_000 and fs.limits["y"].export_w == 10_000
    assert fs.limits["x"].export_floor_kept
    crowded = compute_fallback(net, [*sites, Site("z", "a", Firm(), 40 * KW, 0)])  # 10 kW left: floor dropped
    assert crowded.limits["x"].export_w + crowded.limits["y"].export_w <= 10_000
    assert not crowded.limits["x"].export_floor_kept


def test_ramp_keeps_simultaneous_voltage_change_within_the_rvc_limits() -> None:
    nf = load_network_file(DEMO)
    net = nf.network
    flex = [s for s in nf.sites if isinstance(s.agreement, Dynamic)]
    nodes = np.array([net.node_index[s.node] for s in flex])
    rated = np.array([max(s.max_export_w, s.max_import_w) for s in flex])
    ramp = ramp_rates(net, nodes, rated)
    # independent check: every site ramps in the same direction at its rate for one second
    per_node = {s.node: 0.0 for s in flex}
    for s, g, p in zip(flex, ramp.set_grad_w_hundredths, rated, strict=True):
        per_node[s.node] += g / 1e4 * p
    unregulated = replace(net, branches=tuple(replace(b, regulate_pu=None) for b in net.branches))
    _, volts = walk(unregulated, per_node)
    for b in net.branches:
        limit = 0.05 if b.base_kv <= 1.0 else 0.03
        assert volts[b.to_node] - 1.0 <= limit * (1 + 1e-9), b.to_node
    assert (volts["f2-d"] - 1.0) == pytest.approx(0.03, rel=1e-3)  # the far end of the rural feeder binds
    assert ramp.set_by_node[0] == "f2-d"
    slower = ramp_rates(net, nodes, rated, RampLimits(mv_pu_per_s=0.015, lv_pu_per_s=0.025))
    assert np.all(slower.set_grad_w_hundredths <= ramp.set_grad_w_hundredths)


# ---------------------------------------------------------------- random radial networks


@st.composite
def radial_cases(draw: st.DrawFn) -> tuple[Network, list[Site]]:
    network = draw(radial_networks(node_customers=True, regulators=True))
    sites = draw(site_lists(network, firm=True, floor_share=0.1, import_floors=True, own_customers=True))
    return network, sites


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY = datetime(2026, 6, 21, 4, tzinfo=UTC)  # local midnight at the default longitude, midsummer


@FAST
@given(case=radial_cases(), policy=st.sampled_from(("pro-rata", "tranche", "lifo")))
def test_random_fallbacks_are_safe_and_never_above_the_engine(
    case: tuple[Network, list[Site]], policy: str
) -> None:
    network, sites = case
    _check_safe_and_never_above_the_engine(network, sites, policy)


def _check_safe_and_never_above_the_engine(network: Network, sites: list[Site], policy: str) -> None:
    fs = compute_fallback(network, sites, policy=policy)
    assert worst_case_violations(network, sites, _as_pairs(fs)) == []
    # The engine, told each site's fallback, over a whole day on profile forecasts (every interval
    # milder than the worst case): no envelope below the fallback, so a device on its default beside
    # neighbours on their envelopes loads every constraint no more than the envelopes do.
    es = compute_envelopes(network, sites, DAY, 86400, 3600, policy, minimum_w=_as_pairs(fs))
    assert es.minimum_not_carried == ()
    for j, site_id in enumerate(es.site_ids):
        if site_id in fs.limits:
            f = fs.limits[site_id]
            assert f.export_w <= es.export_limit_w[:, j].min() + 1e-6, site_id
            assert f.import_w <= es.import_limit_w[:, j].min() + 1e-6, site_id
    _check_envelopes_within_limits(network, sites, es)


def _check_envelopes_within_limits(network: Network, sites: list[Site], es: EnvelopeSet) -> None:
    """Every interval, both directions: no rating or bound is broken by the envelopes but those the
    engine reports (fixed flows or static floors alone overload them): the minimum added none."""
    for direction, sign in (("export", 1.0), ("import", -1.0)):
        report = es.constraints[direction]
        over = (report.value - report.limit) * np.where(np.array(report.kinds) == "voltage", sign, 1.0)
        scale = np.where(np.array(report.kinds) == "thermal", np.abs(report.limit), 0.1)
        reported = {
            (es.interval_starts.index(i.interval_start), report.names.index(i.constraint))
            for i in es.infeasibilities
            if i.direction == direction
        }
        broken = {(int(t), int(c)) for t, c in zip(*np.nonzero(over > 1e-6 * scale + 1e-6), strict=True)}
        assert broken <= reported, direction


def _pro_rata_shift_case() -> tuple[Network, list[Site]]:
    """Found by the property test above (CI, 4 December 2026). Two dynamic sites share n4's voltage
    limit; s3's export also crosses b3, rated 983 kW, beside 1 kW of customer PV at n3."""
    v = (0.9375, 1.0625)
    nodes = (
        Node("n0", None, None, 0.0, 0.0, "residential"),
        Node("n1", *v, 0.0, 0.0, "residential"),
        Node("n2", *v, 0.0, 0.0, "residential"),
        Node("n3", 0.9375, 1.09375, 0.0, 1000.0, "residential"),
        Node("n4", 0.9375, 1.078125, 0.0, 0.0, "residential"),
    )
    line = {"base_kv": 0.416, "kind": "line", "tranche_export_w": None, "tranche_import_w": None}
    branches = (
        Branch("b1", "n0", "n1", 0.0, 0.0, rating=None, regulate_pu=None, **line),
        Branch("b2", "n0", "n2", 0.001352, 0.00676, rating=None, regulate_pu=None, **line),
        Branch(
            "b3",
            "n2",
            "n3",
            0.00338,
            0.0,
            rating=Rating(983_000.0, 50_000.0, "explicit"),
            regulate_pu=None,
            **line,
        ),
        Branch("b4", "n3", "n4", 0.001352, 0.0, rating=None, regulate_pu=None, **line),
    )
    network = Network(
        nodes,
        branches,
        power_factor=0.9375,
        source_voltage_pu=1.0,
        timezone="UTC",
        latitude_deg=37.5,
        longitude_deg=-77.4,
        name="network",
    )
    sites = [
        Site("s0", "n1", Firm(), 1000.0, 1000.0),
        Site("s1", "n2", Dynamic(0.0, 0.0), 1_314_000.0, 1000.0),
        Site("s2", "n1", Limited(0.0, 0.0), 1000.0, 1000.0),
        Site("s3", "n4", Dynamic(0.0, 0.0), 983_000.0, 1000.0),
    ]
    return network, sites


def test_a_fallback_is_never_above_the_engine_when_a_milder_interval_shifts_a_shared_limit() -> None:
    # The worst case (customer PV at its peak) keeps s3 under b3's rating, so s1's pro-rata fallback
    # takes none of n4's voltage limit. At night b3 lets s3 export more, and pro-rata alone takes
    # 148 W of n4 from s1: s1 on its fallback beside s3 on that envelope would be over n4's limit.
    network, sites = _pro_rata_shift_case()
    fs = compute_fallback(network, sites, policy="pro-rata")
    s1 = fs.limits["s1"].export_w
    alone = compute_envelopes(network, sites, DAY, 86400, 3600, "pro-rata")
    j = alone.site_ids.index("s1")
    assert alone.export_limit_w[:, j].min() < s1 - 100  # the gap the guaranteed minimum closes
    told = compute_envelopes(network, sites, DAY, 86400, 3600, "pro-rata", minimum_w=_as_pairs(fs))
    assert told.export_limit_w[:, j].min() >= s1
    assert told.minimum_raised["export"] > 0
    # s3 gives up what s1 keeps, and no more: where s1 was not short, nothing changed
    short = alone.export_limit_w[:, j] < s1
    assert np.array_equal(told.export_limit_w[~short], alone.export_limit_w[~short])
    k = alone.site_ids.index("s3")
    assert (told.export_limit_w[short, k] < alone.export_limit_w[short, k]).all()
    _check_safe_and_never_above_the_engine(network, sites, "pro-rata")


@FAST
@given(case=radial_cases())
def test_the_stated_worst_case_is_what_is_checked(case: tuple[Network, list[Site]]) -> None:
    # The fallback's own worst-case report agrees with the independent walk, row by row.
    network, sites = case
    fs = compute_fallback(network, sites, worst_case=WorstCase())
    check = fs.checks["export"]
    pairs = _as_pairs(fs)
    inj = {n.name: (n.pv_w - n.load_w * min(LOAD_SHAPES[n.load_profile])) for n in network.nodes}
    for s in sites:
        inj[s.node] += pairs[s.id][0] if s.id in pairs else _fixed_peak_w(s)[0]
    flows, volts = walk(network, inj)
    for name, value in zip(check.names, check.value, strict=True):
        kind, asset = name.split(":", 1)
        expected = flows[asset] if kind == "thermal" else volts[asset]
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-3 if kind == "thermal" else 1e-9)
