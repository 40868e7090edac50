"""Device models, the site controller, the network solve and scenario parsing of the simulator: quick."""

from __future__ import annotations

import numpy as np
import pytest

from gridshare.grid.netfile import parse_network_document
from gridshare.sim.devices import Battery, EvCharger, PvInverter
from gridshare.sim.events import ControlBase
from gridshare.sim.feeder import suburb_document
from gridshare.sim.fleet import build_fleet, outage_windows, step_times
from gridshare.sim.powerflow import Background, LinearGrid
from gridshare.sim.scenario import ScenarioError, parse_scenario
from gridshare.sim.site import SiteModel
from gridshare.sim.weather import clear_sky_share, cloud_series

NO_LIMIT = ControlBase()


def test_pv_ramps_up_at_its_rate_but_drops_at_once() -> None:
    pv = PvInverter(rated_w=5000, ramp_w_per_s=10)
    assert pv.ceiling_w(5000, 60) == 600
    pv.set_output(4000)
    assert pv.ceiling_w(200, 60) == 200  # the sun went in: no ramp down
    assert pv.ceiling_w(9000, 60) == 4600


def test_battery_respects_power_capacity_and_reserve() -> None:
    b = Battery(capacity_wh=10_000, charge_max_w=5000, discharge_max_w=5000, soc_wh=9_900, efficiency=1.0)
    assert b.charge_room_w(3600) == pytest.approx(100)
    b.apply(100, 3600)
    assert b.soc_wh == pytest.approx(10_000)
    b.soc_wh = 1_500
    assert b.discharge_room_w(3600) == pytest.approx(500)  # 10 % reserve kept


def test_ev_charges_while_plugged_in_and_stops_when_full() -> None:
    ev = EvCharger(max_w=7000, energy_wh=7000, arrive_h=18, depart_h=7)
    assert ev.demand_w(12.0, 60) == 0
    assert ev.demand_w(19.0, 3600) == 7000
    ev.deliver(7000, 3600)
    assert ev.demand_w(20.0, 3600) == 0
    assert ev.plugged_in(2.0) and not ev.plugged_in(8.0)


def test_site_charges_the_battery_before_curtailing_pv_to_meet_the_export_limit() -> None:
    site = SiteModel(
        pv=PvInverter(10_000),
        battery=Battery(capacity_wh=10_000, charge_max_w=2000, discharge_max_w=2000, soc_wh=5000),
    )
    step = site.step(ControlBase(export_limit_w=3000), 8000, 1000, 12.0, 60)
    assert step.net_export_w == pytest.approx(3000)
    assert step.battery_w == pytest.approx(2000)
    assert step.pv_w == pytest.approx(6000)
    assert step.curtailed_w == pytest.approx(2000)


def test_pv_held_at_a_limit_is_curtailment_and_only_the_climb_after_it_is_ramp() -> None:
    """A site held at its export limit loses that PV to the limit, every step (the inverter sits at the
    limit, so its ramp ceiling is below the sun but it is not the ramp holding it back); when the limit
    lifts, the minutes the inverter takes to climb are the ramp's, not curtailment."""
    site = SiteModel(pv=PvInverter(10_000, ramp_w_per_s=10))  # 600 W a minute
    site.pv.set_output(2000)
    held = [site.step(ControlBase(export_limit_w=1000), 8000, 1000, 12.0, 60) for _ in range(5)]
    for step in held:
        assert step.pv_w == pytest.approx(2000)
        assert step.limited_w == pytest.approx(6000) and step.ramp_held_w == pytest.approx(0)
    lifted = [site.step(NO_LIMIT, 8000, 1000, 12.0, 60) for _ in range(3)]
    assert [s.pv_w for s in lifted] == pytest.approx([2600, 3200, 3800])
    for step in lifted:
        assert step.limited_w == pytest.approx(0)
        assert step.ramp_held_w == pytest.approx(8000 - step.pv_w)
    # a limit above where the ramp has got to: the ramp holds it back up to the limit, the limit the rest
    step = site.step(ControlBase(export_limit_w=4000), 8000, 1000, 12.0, 60)
    assert step.pv_w == pytest.approx(4400)
    assert step.ramp_held_w == pytest.approx(5000 - 4400) and step.limited_w == pytest.approx(8000 - 5000)


def test_site_meets_an_import_limit_with_the_battery_then_the_ev_but_never_the_base_load() -> None:
    site = SiteModel(
        battery=Battery(capacity_wh=10_000, charge_max_w=1000, discharge_max_w=1000, soc_wh=5000),
        ev=EvCharger(max_w=7000, energy_wh=50_000, arrive_h=17, depart_h=7),
    )
    step = site.step(ControlBase(import_limit_w=4000), 0, 2000, 19.0, 60)
    assert step.net_export_w == pytest.approx(-4000)
    assert step.ev_w == pytest.approx(3000) and step.battery_w == pytest.approx(-1000)
    tight = SiteModel().step(ControlBase(import_limit_w=500), 0, 2000, 19.0, 60)
    assert tight.net_export_w == pytest.approx(-2000)  # uncontrollable load: cannot comply


def test_a_non_compliant_site_ignores_its_limits() -> None:
    site = SiteModel(pv=PvInverter(10_000))
    step = site.step(ControlBase(export_limit_w=1000), 6000, 500, 12.0, 60, obey=False)
    assert step.net_export_w == pytest.approx(5500)


def test_disconnect_control_stops_generation() -> None:
    step = SiteModel(pv=PvInverter(5000)).step(ControlBase(connect=False), 4000, 300, 12.0, 60)
    assert step.pv_w == 0 and step.net_export_w == pytest.approx(-300)


def test_linear_grid_flags_reverse_flow_over_a_rating() -> None:
    nf = parse_network_document(suburb_document(sites=4, transformers=1))
    grid = LinearGrid(nf.network, nf.sites)
    rating_w = next(c.limit for c in grid.constraints if c.name == "thermal:tx-1:export")
    background = np.zeros(len(nf.network.nodes))
    within = grid.solve(np.full(4, rating_w / 5), background)
    assert not within.excess.any()
    over = grid.solve(np.full(4, rating_w / 3), background)
    names = [c.name for c, e in zip(grid.constraints, over.excess, strict=True) if e > 0]
    assert "thermal:tx-1:export" in names
    excess = over.excess[[c.name for c in grid.constraints].index("thermal:tx-1:export")]
    assert excess == pytest.approx(4 * rating_w / 3 - rating_w)


def test_background_holds_the_engine_forecast_per_interval() -> None:
    nf = parse_network_document(suburb_document(sites=2, transformers=1))
    bg = Background(nf.network, 1_797_800_000, 1_797_800_000 + 3600, 300)
    first = 1_797_800_000 - 1_797_800_000 % 300
    assert np.array_equal(bg.at(first + 1), bg.at(first + 299))


def test_clear_sky_and_clouds_are_plausible() -> None:
    times = step_times(1_797_775_200, 86400, 300)  # Brisbane summer day from local midnight
    share = clear_sky_share(times, -27.47, 153.03)
    assert share.max() > 0.6 and share[:12].max() == 0  # dark at midnight, strong at noon
    clouds = cloud_series(len(times), 300, 0.5, np.random.default_rng(3))
    assert clouds.min() >= 0.05 and clouds.max() <= 1.0
    assert np.all(cloud_series(10, 60, 0.0, np.random.default_rng(1)) == 1.0)


def _scenario(**extra):  # type: ignore[no-untyped-def]
    raw = {"name": "t", "network": {"generate": {"sites": 20, "transformers": 2}}, "duration_h": 1, **extra}
    return parse_scenario(raw)


def test_scenario_rejects_unknown_fields_naming_them() -> None:
    with pytest.raises(ScenarioError, match="duraton_h"):
        parse_scenario({"network": {"generate": {}}, "duraton_h": 3})
    with pytest.raises(ScenarioError, match="policy"):
        _scenario(policy="first-come")
    with pytest.raises(ScenarioError, match="exactly one"):
        _scenario(faults=[{"share": 0.1, "group": "x", "start": "10:00", "duration_h": 1}])


def test_fleet_draws_are_reproducible_and_faults_pick_their_share() -> None:
    scenario = _scenario(
        fleet={"battery_share": 0.5, "non_compliant_share": 0.2, "groups": [{"name": "agg", "count": 5}]},
        faults=[
            {"share": 0.25, "start": "10:00", "duration_h": 2},
            {"group": "agg", "start": "15:00", "duration_h": 1},
        ],
    )
    nf = scenario.network_file()
    times = step_times(scenario.start_s(nf.network.timezone), 3600, 60)
    a, b = build_fleet(scenario, nf, times), build_fleet(scenario, nf, times)
    assert [s.kinds() for s in a] == [s.kinds() for s in b]
    assert [s.non_compliant for s in a] == [s.non_compliant for s in b]
    assert sum(s.group == "agg" for s in a) == 5
    windows = outage_windows(scenario, a, int(times[0]), nf.network.timezone)
    morning = [k for k, w in windows.items() if any(x[1] - x[0] == 7200 for x in w)]
    assert len(morning) == 5
    assert {s.id for s in a if s.group == "agg"} <= set(windows)
