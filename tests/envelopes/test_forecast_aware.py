"""Forecast-aware envelopes: capacity an earlier site will not use goes to later ones, safely.

As issued, LIFO on the demo feeder holds the warehouse PV at its 1,500 kW agreement at 13:00 on
21 June while its forecast is about 1,000 kW, and the later solar farm is curtailed. Forecast-aware
caps the warehouse at forecast + margin and the farm gets the difference. Whatever the margin, the
envelopes still never overload the network (checked by the independent tree walk), never exceed the
agreement, never fall below a floor, and a margin of 100 % is exactly "as issued".
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridshare.core.settings import Settings
from gridshare.envelopes.compute import POLICIES, compute_envelopes
from gridshare.envelopes.forecast import Forecast
from gridshare.envelopes.forecast_aware import forecast_capped
from gridshare.envelopes.planned_derates import compute_planned
from gridshare.grid.agreements import Dynamic
from gridshare.grid.netfile import load_network_file
from gridshare.grid.network import Network, Site
from tests.support.envelope_cases import DEMO, FAST, START, demo_profile_forecast, radial_cases, violations

MIDSUMMER = datetime(2026, 6, 21, 4, tzinfo=UTC)  # midnight in New York
ONE_PM = 13 * 12  # 5-minute interval starting 13:00 local


def test_lifo_as_issued_reserves_the_warehouse_agreement_and_forecast_aware_frees_it() -> None:
    nf = load_network_file(DEMO)
    sites = list(nf.sites)
    fc = demo_profile_forecast(nf.network, sites, MIDSUMMER, 288)
    issued = compute_envelopes(nf.network, sites, MIDSUMMER, 86400, 300, "lifo", forecasts=fc)
    aware = compute_envelopes(
        nf.network, sites, MIDSUMMER, 86400, 300, "lifo", forecasts=fc, forecast_margin_fraction=0.1
    )
    wh, farm = issued.site_ids.index("warehouse-pv"), issued.site_ids.index("solar-farm-north")
    forecast_kw = issued.forecast_export_w[ONE_PM, wh] / 1000
    assert 900 < forecast_kw < 1100
    assert issued.export_limit_w[ONE_PM, wh] == pytest.approx(1_500_000)  # reserved, not used
    assert aware.export_limit_w[ONE_PM, wh] == pytest.approx((forecast_kw + 150) * 1000)  # 10 % of 1.5 MW
    assert aware.export_limit_w[ONE_PM, farm] > issued.export_limit_w[ONE_PM, farm] + 300_000
    # the whole day: less forecast energy curtailed, and not one constraint overloaded
    flexible = issued.flexible
    assert (
        aware.expected_curtailment_wh()[flexible].sum()
        < 0.9 * issued.expected_curtailment_wh()[flexible].sum()
    )
    assert aware.infeasibilities == ()
    assert violations(nf.network, sites, aware, fc) == []
    assert aware.forecast_margin_fraction == 0.1 and issued.forecast_margin_fraction is None


@pytest.mark.parametrize("policy", POLICIES)
def test_demo_feeder_forecast_aware_is_safe_under_every_rule(policy: str) -> None:
    nf = load_network_file(DEMO)
    sites = list(nf.sites)
    fc = demo_profile_forecast(nf.network, sites, MIDSUMMER, 288)
    es = compute_envelopes(
        nf.network, sites, MIDSUMMER, 86400, 300, policy, forecasts=fc, forecast_margin_fraction=0.05
    )
    assert violations(nf.network, sites, es, fc) == []
    for s, site in enumerate(sites):
        if isinstance(site.agreement, Dynamic):
            assert np.all(es.export_limit_w[:, s] >= site.agreement.export_floor_w - 1e-6)
            assert np.all(es.export_limit_w[:, s] <= site.max_export_w + 1e-6)


def _with_site_forecasts(case: tuple[Network, list[Site], Forecast], draw_gen: list[float]) -> Forecast:
    _, sites, fc = case
    n_int = fc.n_intervals
    ids = fc.ids + tuple(s.id for s in sites)
    gen = np.array(draw_gen[: n_int * len(sites)]).reshape(n_int, len(sites))
    return Forecast(
        fc.issued_at,
        fc.start,
        fc.interval_s,
        ids,
        np.hstack([fc.load_w, np.zeros_like(gen)]),
        np.hstack([fc.generation_w, gen]),
    )


@FAST
@given(
    case=radial_cases(),
    policy=st.sampled_from(POLICIES),
    margin=st.floats(0.0, 0.5),
    gen=st.lists(st.floats(0, 2_000_000), min_size=12, max_size=12),
)
def test_forecast_aware_envelopes_never_overload_and_stay_within_forecast_plus_margin(
    case: tuple[Network, list[Site], Forecast], policy: str, margin: float, gen: list[float]
) -> None:
    network, sites, _ = case
    fc = _with_site_forecasts(case, gen)
    es = compute_envelopes(
        network, sites, START, 600, 300, policy, forecasts=fc, forecast_margin_fraction=margin
    )
    assert violations(network, sites, es, fc) == []
    site_gen = fc.generation_w[:, -len(sites) :]
    for s, site in enumerate(sites):
        if not isinstance(site.agreement, Dynamic):
            continue
        ceiling = np.maximum(site_gen[:, s] + margin * site.max_export_w, site.agreement.export_floor_w)
        known = site_gen[:, s].max() > 0
        if known:
            assert np.all(es.export_limit_w[:, s] <= ceiling + 1e-6 * max(1.0, float(ceiling.max())))
        assert np.all(es.export_limit_w[:, s] <= site.max_export_w + 1e-6)


@FAST
@given(
    case=radial_cases(),
    policy=st.sampled_from(POLICIES),
    gen=st.lists(st.floats(0, 2e6), min_size=12, max_size=12),
)
def test_a_margin_of_the_whole_agreement_is_as_issued(
    case: tuple[Network, list[Site], Forecast], policy: str, gen: list[float]
) -> None:
    network, sites, _ = case
    fc = _with_site_forecasts(case, gen)
    issued = compute_envelopes(network, sites, START, 600, 300, policy, forecasts=fc)
    full = compute_envelopes(
        network, sites, START, 600, 300, policy, forecasts=fc, forecast_margin_fraction=1.0
    )
    np.testing.assert_allclose(full.export_limit_w, issued.export_limit_w, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(full.import_limit_w, issued.import_limit_w, rtol=1e-9, atol=1e-6)


def test_caps_keep_floors_and_leave_sites_without_a_forecast_alone() -> None:
    floor = np.array([[100.0, 0.0, 0.0]])
    cap = np.array([[1000.0, 1000.0, 1000.0]])
    wanted = np.array([[-50.0, 300.0, 0.0]])  # importing; 300 W; nothing
    out = forecast_capped(floor, cap, wanted, 0.1, np.array([True, True, False]))
    assert out.tolist() == [[100.0, 400.0, 1000.0]]
    with pytest.raises(ValueError, match="margin"):
        forecast_capped(floor, cap, wanted, -0.1, np.array([True, True, True]))


def test_the_setting_is_off_by_default_and_reaches_the_live_engine() -> None:
    settings = Settings()
    assert settings.forecast_aware_envelopes is False
    assert settings.forecast_margin_fraction == 0.1
    nf = load_network_file(DEMO)
    noon = datetime(2026, 6, 21, 17, tzinfo=UTC)
    issued = compute_planned(nf, [], noon, 3600, 300, "lifo", None)
    aware = compute_planned(nf, [], noon, 3600, 300, "lifo", None, forecast_margin_fraction=0.1)
    wh = issued.envelopes.site_ids.index("warehouse-pv")
    assert issued.envelopes.export_limit_w[0, wh] == pytest.approx(1_500_000)
    assert aware.envelopes.export_limit_w[0, wh] < 1_200_000
    assert aware.envelopes.forecast_margin_fraction == 0.1
