"""AC power flow in the simulator (sim/acflow.py) against hand calculations on two- and three-node feeders.

Expectations come from the closed forms of a purely resistive radial feeder at unity power factor, in
per unit on 1 MVA: a bus exporting p through resistance r from a 1 pu source sits at
v = (1 + sqrt(1 + 4 r p)) / 2 (it sends current p / v back), and a bus drawing p through r sits at
v = (1 + sqrt(1 - 4 r p)) / 2 while the source sends p / v. The linear model says 1 +/- r p and
carries p. Against those: AC agrees with the linear model at low loading, departs from it the way the
physics says at high loading (less rise and lost power when exporting, more sag and extra flow when
importing), and counts violations the linear model cannot see.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridshare.grid.netfile import parse_network_document
from gridshare.sim.acflow import AcGrid
from gridshare.sim.feeder import suburb_document
from gridshare.sim.powerflow import Background, LinearGrid
from gridshare.sim.report import write_report
from gridshare.sim.runner import run_scenario
from gridshare.sim.scenario import ScenarioError, parse_scenario

BASE_KV = 0.4
BASE_VA = 1e6


def _r_pu(r_ohm: float) -> float:
    return r_ohm * BASE_VA / (BASE_KV * 1e3) ** 2


def _chain(
    r_ohm: list[float],
    ratings_kw: list[dict[str, float] | None] | None = None,
    v_bounds: tuple[float, float] = (0.5, 1.5),
    regulate_pu: float | None = None,
    regulated: int = 1,
) -> Any:
    """src - b1 - n1 - b2 - n2 ...: resistive branches at 0.4 kV, unity power factor, one site per bus."""
    nodes: list[dict[str, Any]] = [{"name": "src"}]
    branches = []
    for i, r in enumerate(r_ohm, start=1):
        nodes.append({"name": f"n{i}", "v_min_pu": v_bounds[0], "v_max_pu": v_bounds[1]})
        branch: dict[str, Any] = {
            "name": f"b{i}",
            "from": "src" if i == 1 else f"n{i - 1}",
            "to": f"n{i}",
            "base_kv": BASE_KV,
            "r_ohm": r,
            "x_ohm": 0.0,
        }
        if ratings_kw and ratings_kw[i - 1]:
            branch["rating"] = ratings_kw[i - 1]
        if i == regulated and regulate_pu is not None:
            branch["regulate_pu"] = regulate_pu
        branches.append(branch)
    doc = {
        "name": "chain",
        "power_factor": 1.0,
        "timezone": "UTC",
        "network": {"nodes": nodes, "branches": branches},
        "sites": [
            {
                "id": f"s{i}",
                "node": f"n{i}",
                "nmi": f"{4000000000 + i}",
                "max_export_kw": 1000,
                "max_import_kw": 1000,
                "agreement": {"type": "firm"},
            }
            for i in range(1, len(r_ohm) + 1)
        ],
    }
    nf = parse_network_document(doc, source="chain")
    return nf.network, nf.sites


def _both(network: Any, sites: Any, export_w: list[float]) -> tuple[Any, Any]:
    x, bg = np.array(export_w), np.zeros(len(network.nodes))
    return LinearGrid(network, sites).solve(x, bg), AcGrid(network, sites).solve(x, bg)


def _value(grid_solution: Any, grid: LinearGrid, name: str) -> float:
    return float(grid_solution.value[[c.name for c in grid.constraints].index(name)])


def test_exporting_bus_low_and_high_loading() -> None:
    network, sites = _chain([0.016])  # r = 0.1 pu
    r = _r_pu(0.016)
    # low loading, 10 kW: the rise differs from the linear model's by a fraction of a percent
    lin, ac = _both(network, sites, [10e3])
    p = 0.01
    assert lin.voltage_pu[1] - 1 == pytest.approx(r * p, rel=1e-9)
    assert ac.voltage_pu[1] == pytest.approx((1 + math.sqrt(1 + 4 * r * p)) / 2, abs=1e-8)
    assert ac.voltage_pu[1] - 1 == pytest.approx(lin.voltage_pu[1] - 1, rel=0.01)
    assert ac.reverse_flow_w[0] == pytest.approx(lin.reverse_flow_w[0], rel=0.01)
    # high loading, 1 MW: the rise is several percent below the linear estimate (conservative)
    lin, ac = _both(network, sites, [1e6])
    v_exact = (1 + math.sqrt(1 + 4 * r * 1.0)) / 2
    assert ac.voltage_pu[1] == pytest.approx(v_exact, abs=1e-8)
    assert ac.voltage_pu[1] - 1 < 0.95 * (lin.voltage_pu[1] - 1)
    # the branch carries the full export at its sending end; r i^2 is lost before the source
    assert ac.reverse_flow_w[0] == pytest.approx(1e6, rel=1e-6)


def test_importing_feeder_has_losses_and_violations_the_linear_model_misses() -> None:
    # two 0.008 ohm sections (0.05 pu each), 400 kW drawn at the far end
    r_total = _r_pu(0.016)
    p = 0.4
    v_far = (1 + math.sqrt(1 - 4 * r_total * p)) / 2  # one current through both sections
    sent_w = p / v_far * BASE_VA  # what the source sends: the load plus r i^2
    v_min = (v_far + (1 - r_total * p)) / 2  # between the AC sag and the linear estimate
    import_kw = (sent_w / 1e3 + 400.0) / 2  # between the AC flow and the load
    network, sites = _chain(
        [0.008, 0.008], ratings_kw=[{"import_kw": import_kw}, None], v_bounds=(v_min, 1.5)
    )
    x, bg = np.array([0.0, -400e3]), np.zeros(3)
    linear, ac_grid = LinearGrid(network, sites), AcGrid(network, sites)
    lin, ac = linear.solve(x, bg), ac_grid.solve(x, bg)
    assert ac.voltage_pu[2] == pytest.approx(v_far, abs=1e-8)
    assert lin.voltage_pu[2] == pytest.approx(1 - r_total * p, abs=1e-12)
    assert -ac.reverse_flow_w[0] == pytest.approx(sent_w, rel=1e-6)
    assert -lin.reverse_flow_w[0] == pytest.approx(400e3)
    # the same constraints, in the same order: the runner and the report need not know which solved
    assert ac_grid.constraints == linear.constraints
    violated_ac = {c.name for c, e in zip(ac_grid.constraints, ac.excess, strict=True) if e > 0}
    violated_lin = {c.name for c, e in zip(linear.constraints, lin.excess, strict=True) if e > 0}
    assert violated_lin == set()
    assert violated_ac == {"thermal:b1:import", "voltage:n2:min"}
    assert _value(ac, linear, "thermal:b1:import") == pytest.approx(-sent_w, rel=1e-6)


def test_a_regulator_holds_its_bus_and_passes_on_what_arrives() -> None:
    # src -(regulator to 1.03 pu, 0.004 ohm)- n1 -(0.016 ohm)- n2 exporting 500 kW
    network, sites = _chain([0.004, 0.016], regulate_pu=1.03)
    r = _r_pu(0.016)
    p = 0.5
    v2 = (1.03 + math.sqrt(1.03**2 + 4 * r * p)) / 2
    arriving_w = (p - r * (p / v2) ** 2) * BASE_VA  # what reaches the regulated bus
    lin, ac = _both(network, sites, [0.0, 500e3])
    assert ac.voltage_pu[1] == pytest.approx(1.03)
    assert ac.voltage_pu[2] == pytest.approx(v2, abs=1e-8)
    assert lin.voltage_pu[2] == pytest.approx(1.03 + r * p)
    assert ac.reverse_flow_w[0] == pytest.approx(arriving_w, rel=1e-6)
    assert ac.reverse_flow_w[1] == pytest.approx(500e3, rel=1e-6)


def test_a_regulator_mid_feeder_loads_the_feeder_above_it_with_what_arrives() -> None:
    # src -(0.008 ohm)- n1 -(regulator to 1.0 pu, 0.004 ohm)- n2 -(0.016 ohm)- n3 exporting 500 kW
    network, sites = _chain([0.008, 0.004, 0.016], regulate_pu=1.0, regulated=2)
    r1, r2, r3 = _r_pu(0.008), _r_pu(0.004), _r_pu(0.016)
    p = 0.5
    v3 = (1 + math.sqrt(1 + 4 * r3 * p)) / 2
    a = p - r3 * (p / v3) ** 2  # reaches the regulator
    # above it, one current carries `a` from the regulator's far side through r2 and r1 to the source
    v_far = (1 + math.sqrt(1 + 4 * (r1 + r2) * a)) / 2
    i = a / v_far
    v1 = 1 + r1 * i
    lin, ac = _both(network, sites, [0.0, 0.0, 500e3])
    assert ac.voltage_pu[3] == pytest.approx(v3, abs=1e-8)
    assert ac.voltage_pu[2] == pytest.approx(1.0)
    assert ac.voltage_pu[1] == pytest.approx(v1, abs=1e-8)
    assert ac.reverse_flow_w[2] == pytest.approx(500e3, rel=1e-6)
    assert ac.reverse_flow_w[1] == pytest.approx(a * BASE_VA, rel=1e-6)
    assert ac.reverse_flow_w[0] == pytest.approx(v1 * i * BASE_VA, rel=1e-6)
    assert lin.voltage_pu[1] == pytest.approx(1 + r1 * p)  # the linear model loses nothing on the way


def test_beyond_the_transfer_limit_the_step_falls_back_to_the_linear_model() -> None:
    network, sites = _chain([0.016])  # r = 0.1 pu: no AC solution draws more than 1 / (4 r) = 2.5 MW
    ac_grid = AcGrid(network, sites)
    x, bg = np.array([-3e6]), np.zeros(2)
    ac = ac_grid.solve(x, bg)
    lin = LinearGrid(network, sites).solve(x, bg)
    assert ac_grid.diverged == 1
    np.testing.assert_allclose(ac.value, lin.value)
    # and the next, feasible step solves again from a flat start
    ok = ac_grid.solve(np.array([-10e3]), bg)
    assert ok.voltage_pu[1] == pytest.approx((1 + math.sqrt(1 - 4 * _r_pu(0.016) * 0.01)) / 2, abs=1e-8)


def test_suburb_agrees_with_the_linear_model_at_low_loading_and_loses_power_at_high() -> None:
    nf = parse_network_document(suburb_document(20, 2, seed=3), source="suburb")
    network, sites = nf.network, nf.sites
    linear, ac_grid = LinearGrid(network, sites), AcGrid(network, sites)
    bg = np.zeros(len(network.nodes))
    low = np.full(len(sites), 500.0)
    lin, ac = linear.solve(low, bg), ac_grid.solve(low, bg)
    np.testing.assert_allclose(ac.reverse_flow_w, lin.reverse_flow_w, rtol=0.03)
    np.testing.assert_allclose(ac.voltage_pu - 1, lin.voltage_pu - 1, rtol=0.03, atol=1e-6)
    # at 10 kW a house, what reaches the zone transformer is the streets' export less the I^2 Z of every
    # branch below it (first order: each branch's linear flow at the network's power factor, V = 1 pu)
    high = np.full(len(sites), 10e3)
    lin, ac = linear.solve(high, bg), ac_grid.solve(high, bg)
    pf = network.power_factor
    tan_phi = math.tan(math.acos(pf))
    lost_va = sum(
        complex(br.r_ohm, br.x_ohm) * (lin.reverse_flow_w[b] / pf) ** 2 / (br.base_kv * 1e3) ** 2
        for b, br in enumerate(network.branches)
        if br.name != "zone-tx"
    )
    zone_tx = [b.name for b in network.branches].index("zone-tx")
    exported_w = lin.reverse_flow_w[zone_tx]
    arriving_w = abs(complex(exported_w, exported_w * tan_phi) - lost_va) * pf
    assert exported_w - ac.reverse_flow_w[zone_tx] == pytest.approx(exported_w - arriving_w, rel=0.05)
    assert exported_w - ac.reverse_flow_w[zone_tx] > 0.002 * exported_w  # losses the linear model has not


def test_scenario_powerflow_key_is_checked() -> None:
    base = {"network": {"generate": {"sites": 2, "transformers": 1}}}
    assert parse_scenario(base).powerflow == "linear"
    assert parse_scenario({**base, "powerflow": "ac"}).powerflow == "ac"
    with pytest.raises(ScenarioError, match="powerflow"):
        parse_scenario({**base, "powerflow": "dc"})


def test_a_short_ac_run_writes_its_report(tmp_path: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "ac-short",
            "network": {"generate": {"sites": 6, "transformers": 2, "seed": 2, "export_kva_per_site": 1.0}},
            "start": "2026-12-21T11:00:00",
            "duration_h": 1,
            "step_s": 60,
            "powerflow": "ac",
            "clock": {"mode": "accelerated", "factor": 720},
        }
    )
    out = run_scenario(scenario, tmp_path / "work")
    figs = write_report(out, tmp_path / "report")
    assert figs["powerflow"] == "ac" and figs["steps"] == 60
    cost = figs["run"]["powerflow"]
    assert cost["solves"] >= 60 and cost["not_converged"] == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "AC power flow" in text and "linear model sees" in text
    assert figs["violations_linear"] is not None  # beside AC's, for the linearisation error
    assert (tmp_path / "report" / "constraints.png").stat().st_size > 0
    # the recorded constraint values are the AC solve of what the fleet did (not the linear model's)
    rec = out.recording
    net = out.network.network
    specs = [s.spec for s in out.sites]
    background = Background(net, out.start_s, out.end_s, scenario.server.envelope_interval_s)
    k = 30  # 11:30, PV exporting
    bg = background.at(float(rec.times_s[k]))
    ac = AcGrid(net, specs).solve(rec.net_export_w[k], bg)
    lin = LinearGrid(net, specs).solve(rec.net_export_w[k], bg)
    np.testing.assert_allclose(rec.value[k], ac.value, rtol=1e-6)  # NR tolerance
    assert not np.allclose(rec.value[k], lin.value, rtol=1e-6)
