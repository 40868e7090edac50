"""Planner study numbers against a case small enough to work out by hand.

Two PV sites behind one 1,000 kW transformer, a flat 200 kW load beside them (so 1,200 kW can be
exported), a year of hourly profiles from a CSV. A: 600 kW, first in the queue; B: 1,000 kW,
second. With p(t) the PV shape:

* pro-rata as issued: both rise in proportion to their agreed capacity until 600 x + 1000 x = 1200,
  so A is held at 450 kW and B at 750 kW whenever they would export more;
* LIFO as issued: A keeps its 600 kW; B gets what is left, 600 kW;
* LIFO forecast-aware (margin 10 %): A's share would be capped at 600 p + 60 kW (its forecast plus
  10 % of 600 kW), but never below its fallback limit (a device that loses contact drops to it, and
  B must leave it room): in the worst case 1,200 kW less the 5 % fallback margin is 1,140 kW, and LIFO
  gives A its whole 600 kW of that. So A keeps 600 kW, and B gets 1200 - 600, as when issued.

The expected energies below are computed from those lines with numpy, not by the engine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridshare.planning import Study

HOURS = 8760
NETWORK = """
name: two-sites
power_factor: 1.0
timezone: UTC
network:
  nodes:
    - {name: grid}
    - {name: lv, v_min_pu: null, v_max_pu: null, load_kw: 200, load_profile: flat}
  branches:
    - {name: tx, kind: transformer, from: grid, to: lv, base_kv: 0.4, r_ohm: 0.001, x_ohm: 0.004,
       rating: {export_kw: 1000, import_kw: 1000}}
sites:
  - {id: a, node: lv, max_export_kw: 600, max_import_kw: 0, queue_position: 0,
     agreement: {type: dynamic}, forecast: {pv_kw: 600, load_kw: 0}}
  - {id: b, node: lv, max_export_kw: 1000, max_import_kw: 0, queue_position: 1,
     agreement: {type: dynamic}, forecast: {pv_kw: 1000, load_kw: 0}}
"""


def pv_shape() -> np.ndarray:
    """A year of hourly PV: a half-sine from 06:00 to 18:00, a seasonal factor and a cloudy day a week."""
    hour = np.arange(HOURS) % 24
    day = np.arange(HOURS) // 24
    daily = np.clip(np.sin(np.pi * (hour + 0.5 - 6) / 12), 0, None)
    season = 0.7 + 0.3 * np.cos(2 * np.pi * (day - 172) / 365)
    clouds = np.where((day % 7) == 3, 0.4, 1.0)
    return np.round(daily * season * clouds, 6)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("hand")
    network = root / "two-sites.yaml"
    network.write_text(NETWORK)
    p = pv_shape()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = ["time,pv"] + [
        f"{(start + timedelta(hours=h)).strftime('%Y-%m-%dT%H:%M:%SZ')},{p[h]}" for h in range(HOURS)
    ]
    profiles = root / "pv.csv"
    profiles.write_text("\n".join(lines) + "\n")
    return network, profiles, p


def _mwh(kw: np.ndarray) -> float:
    return float(kw.sum()) / 1000.0  # hourly kW -> MWh


def test_pro_rata_and_lifo_match_the_hand_calculation(case: tuple[Path, Path, np.ndarray]) -> None:
    network, profiles, p = case
    study = Study.load(network, profiles=profiles, margin_fraction=0.1)
    result = study.run(rules=["pro-rata", "lifo"], behaviours=["as-issued", "forecast-aware"])
    got = result.sites.set_index(["rule", "behaviour", "site_id"])

    gen_a, gen_b = 600 * p, 1000 * p
    expected = {
        ("pro-rata", "as-issued", "a"): _mwh(np.clip(gen_a - 450, 0, None)),
        ("pro-rata", "as-issued", "b"): _mwh(np.clip(gen_b - 750, 0, None)),
        ("lifo", "as-issued", "a"): 0.0,
        ("lifo", "as-issued", "b"): _mwh(np.clip(gen_b - 600, 0, None)),
    }
    a_fallback = min(600, 0.95 * 1200)
    a_cap = np.maximum(np.minimum(600, gen_a + 60), a_fallback)
    expected[("lifo", "forecast-aware", "a")] = 0.0
    expected[("lifo", "forecast-aware", "b")] = _mwh(np.clip(gen_b - np.minimum(1000, 1200 - a_cap), 0, None))
    for key, mwh in expected.items():
        assert got.loc[key, "energy_curtailed_mwh"] == pytest.approx(mwh, rel=1e-6, abs=1e-6), key
    available_a = got.loc[("pro-rata", "as-issued", "a"), "energy_available_mwh"]
    assert available_a == pytest.approx(_mwh(gen_a), rel=1e-9)
    share_b = 100 * expected[("lifo", "as-issued", "b")] / _mwh(gen_b)
    assert got.loc[("lifo", "as-issued", "b"), "curtailed_pct"] == pytest.approx(share_b, rel=1e-6)
    # hours and events: B is curtailed in every daylight hour its output tops 600 kW under LIFO
    over = gen_b - 600 > 1000 * 1e-4
    assert got.loc[("lifo", "as-issued", "b"), "hours_curtailed"] == int(over.sum())
    runs = np.count_nonzero(np.diff(np.r_[0, over.astype(int)]) == 1)
    assert got.loc[("lifo", "as-issued", "b"), "events"] == runs
    # LIFO sheds more in total than pro-rata here; forecast-aware recovers none of it, since A's
    # fallback is its whole 600 kW and no envelope goes below the fallback
    totals = result.totals[result.totals["group"] == "dynamic sites"].set_index(["rule", "behaviour"])
    lifo, prorata = (
        totals.loc[("lifo", "as-issued"), "energy_curtailed_mwh"],
        totals.loc[("pro-rata", "as-issued"), "energy_curtailed_mwh"],
    )
    assert lifo > prorata
    assert totals.loc[("lifo", "forecast-aware"), "energy_curtailed_mwh"] == pytest.approx(lifo, rel=1e-9)


def test_attribution_duration_curve_and_heatmap_add_up(case: tuple[Path, Path, np.ndarray]) -> None:
    network, profiles, p = case
    result = Study.load(network, profiles=profiles).run(rules=["lifo"])
    b_lost = _mwh(np.clip(1000 * p - 600, 0, None))
    cause = result.attribution.set_index(["site_id", "cause"])
    assert cause.loc[("b", "thermal:tx"), "curtailed_mwh"] == pytest.approx(b_lost, rel=1e-6)
    assert cause.loc[("b", "thermal:tx"), "share_pct"] == pytest.approx(100.0)
    heat = result.heatmap[result.heatmap["site_id"] == "b"]
    assert heat["curtailed_mwh"].sum() == pytest.approx(b_lost, rel=1e-6)
    july = heat[heat["month"] == 7]
    assert july.loc[july["hour"] < 6, "curtailed_mwh"].sum() == 0  # nothing at night
    curve = result.duration_curve[result.duration_curve["site_id"] == "b"]
    assert curve["curtailed_kw"].iloc[0] == pytest.approx(float(np.max(1000 * p - 600)), rel=1e-6)
    assert curve["curtailed_kw"].is_monotonic_decreasing
    hours = result.constraints.set_index("constraint").loc["thermal:tx"]
    assert hours["hours_curtailing"] == int((1000 * p - 600 > 0.1).sum())


def test_weather_draws_give_a_p10_p50_p90_band(case: tuple[Path, Path, np.ndarray]) -> None:
    network, profiles, p = case
    result = Study.load(network, profiles=profiles, draws=6, seed=3).run(rules=["lifo"])
    band = result.percentiles.set_index("site_id").loc["b"]
    assert band["years"] == 6
    assert band["curtailed_pct_p10"] <= band["curtailed_pct_p50"] <= band["curtailed_pct_p90"]
    assert band["curtailed_pct_p10"] < band["curtailed_pct_p90"]  # the draws differ
    # each draw is a year of whole days from the same months: its curtailment is a sum of the
    # original days' curtailment, so it lies between the driest and the sunniest month mixes
    daily = np.clip(1000 * p - 600, 0, None).reshape(365, 24).sum(axis=1) / 1000
    years = result.sites[result.sites["site_id"] == "b"]["energy_curtailed_mwh"].to_numpy()
    assert np.all(years >= 365 * daily.min() - 1e-6) and np.all(years <= 365 * daily.max() + 1e-6)
    assert len(set(np.round(years, 6))) == 6
