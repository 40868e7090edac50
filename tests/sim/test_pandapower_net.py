"""Checking the fleet against a planner's own pandapower network (sim/pandapower_net.py).

The cross-check is a pandapower net written by hand to be the engine's chain feeder (same R/X per
branch, the engine's amp rating as `max_i_ka`): solved from the same injections, it must give the
voltages and violations `AcGrid` gives for the engine's network. The other tests are what a planner
relies on: the net's own ratings count where the engine's network has none, its own loads stay or go
as `background` says, and a scenario that does not fit the net stops with an error naming the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pytest

from gridshare.grid.netfile import parse_network_document
from gridshare.sim import plots
from gridshare.sim.acflow import AcGrid
from gridshare.sim.figures import violation_summary
from gridshare.sim.pandapower_net import GivenNetGrid
from gridshare.sim.powerflow import Background
from gridshare.sim.record import Recording
from gridshare.sim.report import write_report
from gridshare.sim.runner import run_scenario
from gridshare.sim.scenario import PandapowerSpec, ScenarioError, parse_scenario

KV = 0.4


def _chain(
    r_ohm: list[float],
    x_ohm: list[float],
    ratings: list[dict[str, float] | None],
    power_factor: float = 1.0,
    v_bounds: tuple[float, float] = (0.5, 1.5),
    bg_kw: dict[str, float] | None = None,
) -> Any:
    """Engine network src - b1 - n1 - b2 - n2 ... at 0.4 kV, one site per node (as in test_sim_acflow)."""
    nodes: list[dict[str, Any]] = [{"name": "src"}]
    branches = []
    for i, (r, x) in enumerate(zip(r_ohm, x_ohm, strict=True), start=1):
        node: dict[str, Any] = {"name": f"n{i}", "v_min_pu": v_bounds[0], "v_max_pu": v_bounds[1]}
        if bg_kw and f"n{i}" in bg_kw:
            node["load_kw"] = bg_kw[f"n{i}"]
        nodes.append(node)
        branch: dict[str, Any] = {
            "name": f"b{i}",
            "from": "src" if i == 1 else f"n{i - 1}",
            "to": f"n{i}",
            "base_kv": KV,
            "r_ohm": r,
            "x_ohm": x,
        }
        if ratings[i - 1]:
            branch["rating"] = ratings[i - 1]
        branches.append(branch)
    doc = {
        "name": "chain",
        "power_factor": power_factor,
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


def _pp_chain(r_ohm: list[float], x_ohm: list[float], max_i_ka: list[float], names: bool = True) -> Any:
    """The same chain as a planner would draw it in pandapower: 1 km lines with the branch's ohms."""
    net = pp.create_empty_network()
    buses = [pp.create_bus(net, vn_kv=KV, name="src")]
    for i in range(1, len(r_ohm) + 1):
        buses.append(pp.create_bus(net, vn_kv=KV, name=f"n{i}" if names else f"bus {i}"))
    pp.create_ext_grid(net, buses[0], vm_pu=1.0, va_degree=0.0)
    for i, (r, x, i_max) in enumerate(zip(r_ohm, x_ohm, max_i_ka, strict=True), start=1):
        pp.create_line_from_parameters(net, buses[i - 1], buses[i], 1.0, r, x, 0.0, i_max, name=f"b{i}")
    return net


def _saved(net: Any, tmp_path: Path, name: str = "feeder.json") -> Path:
    path = tmp_path / name
    pp.to_json(net, str(path))
    return path


def _over(constraints: Any, excess: np.ndarray) -> set[str]:
    return {c.name for c, e in zip(constraints, excess, strict=True) if e > 0}


R, X = [0.01, 0.02, 0.02], [0.005, 0.01, 0.01]
PF = 0.95


def test_the_same_feeder_in_pandapower_gives_what_ac_on_the_engine_network_gives(tmp_path: Path) -> None:
    # b2 rated 200 A both ways (the engine converts it at 0.4 kV and pf 0.95), v_max 1.045 pu everywhere
    network, sites = _chain(R, X, [None, {"amps": 200}, None], power_factor=PF, v_bounds=(0.9, 1.045))
    path = _saved(_pp_chain(R, X, [math.nan, 0.2, math.nan]), tmp_path)
    given = GivenNetGrid.from_spec(PandapowerSpec(file=path), tmp_path, network, sites)
    ac = AcGrid(network, sites)
    rating_w = math.sqrt(3) * KV * 1e3 * 200 * PF  # 200 A as the engine converts it: sqrt(3) V I pf
    bg = np.zeros(len(network.nodes))
    for share, expect_over in ((1.2, True), (0.8, False)):
        x = np.array([0.0, 0.0, share * rating_w])  # the far end exports through b2 and b3
        g, a = given.solve(x, bg), ac.solve(x, bg)
        for i in range(1, 4):
            assert g.voltage_pu[given.bus_names.index(f"n{i}")] == pytest.approx(a.voltage_pu[i], abs=1e-7)
        over_given = _over(given.constraints, g.excess)
        over_ac = {n.replace("thermal:", "thermal:line:") for n in _over(ac.constraints, a.excess)}
        assert over_given == over_ac
        assert ("thermal:line:b2:export" in over_given) is expect_over
        assert ("voltage:n3:max" in over_given) is expect_over  # the rise at the far end
    assert given.diverged == 0 and given.solves == 2


def test_a_rating_only_the_given_net_has_is_checked(tmp_path: Path) -> None:
    # the engine's network leaves b1 unrated; the planner's net gives it 100 A
    network, sites = _chain(R, X, [None, None, None], power_factor=PF)
    rating_w = math.sqrt(3) * KV * 1e3 * 100 * PF
    net = _pp_chain(R, X, [0.1, math.nan, math.nan])
    given = GivenNetGrid.from_spec(PandapowerSpec(file=_saved(net, tmp_path)), tmp_path, network, sites)
    x, bg = np.array([0.0, 0.0, 1.3 * rating_w]), np.zeros(len(network.nodes))
    assert _over(given.constraints, given.solve(x, bg).excess) == {"thermal:line:b1:export"}
    assert _over(AcGrid(network, sites).constraints, AcGrid(network, sites).solve(x, bg).excess) == set()
    # importing as much overloads it the other way
    assert _over(given.constraints, given.solve(-x, bg).excess) == {"thermal:line:b1:import"}
    # the planner's max_loading_percent lowers the limit: 70 % of the rating is over a 50 % loading limit
    net.line.loc[0, "max_loading_percent"] = 50.0
    half = GivenNetGrid.from_spec(
        PandapowerSpec(file=_saved(net, tmp_path, "half.json")), tmp_path, network, sites
    )
    x70 = np.array([0.0, 0.0, 0.7 * rating_w])
    assert _over(half.constraints, half.solve(x70, bg).excess) == {"thermal:line:b1:export"}
    assert _over(given.constraints, given.solve(x70, bg).excess) == set()


def test_background_net_keeps_the_files_loads_and_engine_replaces_them(tmp_path: Path) -> None:
    network, sites = _chain(R, X, [None, None, None], bg_kw={"n2": 20.0})
    net = _pp_chain(R, X, [0.5, 0.5, 0.5])
    pp.create_load(net, 2, p_mw=0.030, name="shops")  # 30 kW at n2, in the planner's file only
    path = _saved(net, tmp_path)
    x = np.array([0.0, 0.0, 100e3])
    engine_bg = np.array([0.0, 0.0, -20e3, 0.0])  # what the engine's forecast says n2 draws
    kept = GivenNetGrid.from_spec(PandapowerSpec(file=path, background="net"), tmp_path, network, sites)
    replaced = GivenNetGrid.from_spec(PandapowerSpec(file=path), tmp_path, network, sites)
    b1 = kept.element_names.index("line:b1")
    # what leaves the feeder at b1 is the far end's export less what n2 draws (plus a little loss)
    assert kept.solve(x, engine_bg).reverse_flow_w[b1] == pytest.approx(70e3, rel=0.03)
    assert replaced.solve(x, engine_bg).reverse_flow_w[b1] == pytest.approx(80e3, rel=0.03)
    assert replaced.solve(x, np.zeros(4)).reverse_flow_w[b1] == pytest.approx(100e3, rel=0.03)


def test_a_step_the_net_cannot_solve_is_left_out_and_the_report_still_draws(tmp_path: Path) -> None:
    network, sites = _chain(R, X, [None, None, None])
    net = _pp_chain(R, X, [0.1, math.nan, math.nan])  # b1: 100 A, about 69 kW at 0.4 kV
    given = GivenNetGrid.from_spec(PandapowerSpec(file=_saved(net, tmp_path)), tmp_path, network, sites)
    bg = np.zeros(len(network.nodes))
    over = np.array([0.0, 0.0, 90e3])
    beyond = np.array([0.0, 0.0, -3e6])  # 3 MW drawn through 0.05 ohm at 0.4 kV: no AC solution exists
    rec = Recording(np.arange(4) * 60.0, 60, tuple(s.id for s in sites), given.constraints)
    for k, x in enumerate((over, beyond, over, over)):
        solved = given.solve(x, bg)
        rec.value[k], rec.excess[k], rec.excess_compliant[k] = solved.value, solved.excess, solved.excess
    rec.steps_done = 4
    assert given.diverged == 1 and given.solves == 4
    assert np.isnan(rec.value[1]).all() and np.isfinite(rec.value[[0, 2, 3]]).all()  # it solves again after
    # the unsolved step is no violation and splits the overload into two events
    summary = violation_summary(rec, rec.excess)
    assert summary["count"] == 2 and summary["constraint_steps"] == 3
    assert [e["duration_s"] for e in summary["events"]] == [60, 120]
    assert rec.constraints[plots.most_loaded(rec, 1)[0]].name == "thermal:line:b1:export"
    assert plots.constraints_plot(rec, "UTC", tmp_path / "constraints.png").stat().st_size > 0


def test_scenario_errors_name_the_field(tmp_path: Path) -> None:
    base: dict[str, Any] = {"network": {"generate": {"sites": 2, "transformers": 1}}}
    with pytest.raises(ScenarioError, match=r"pandapower\.file: .*nope\.json does not exist"):
        parse_scenario({**base, "pandapower": {"file": "nope.json"}}, tmp_path)
    path = _saved(_pp_chain(R, X, [0.1, 0.1, 0.1]), tmp_path)
    with pytest.raises(ScenarioError, match=r"powerflow: `linear` cannot check a given `pandapower`"):
        parse_scenario({**base, "powerflow": "linear", "pandapower": {"file": str(path)}}, tmp_path)
    assert parse_scenario({**base, "pandapower": {"file": "feeder.json"}}, tmp_path).powerflow == "ac"
    with pytest.raises(ScenarioError, match=r"pandapower\.bakground"):
        parse_scenario({**base, "pandapower": {"file": "feeder.json", "bakground": "net"}}, tmp_path)
    network, sites = _chain(R, X, [None, None, None])
    # a site's node with no bus of that name
    unnamed = _saved(_pp_chain(R, X, [0.1, 0.1, 0.1], names=False), tmp_path, "unnamed.json")
    with pytest.raises(ScenarioError, match=r"pandapower\.buses: site s1's node 'n1' has no bus named 'n1'"):
        GivenNetGrid.from_spec(PandapowerSpec(file=unnamed), tmp_path, network, sites)
    # mapped explicitly, it loads; a mapping to a bus that does not exist is named by its node
    mapping = {f"n{i}": f"bus {i}" for i in range(1, 4)}
    GivenNetGrid.from_spec(PandapowerSpec(file=unnamed, buses=mapping), tmp_path, network, sites)
    with pytest.raises(ScenarioError, match=r"pandapower\.buses\.n2: .* no bus named 'bus 9'"):
        GivenNetGrid.from_spec(
            PandapowerSpec(file=unnamed, buses={**mapping, "n2": "bus 9"}), tmp_path, network, sites
        )
    # two buses of one name make the mapping ambiguous
    twice = _pp_chain(R, X, [0.1, 0.1, 0.1])
    pp.create_bus(twice, vn_kv=KV, name="n3")
    with pytest.raises(ScenarioError, match=r"pandapower\.buses: 2 buses are named 'n3'.*ambiguous"):
        GivenNetGrid.from_spec(
            PandapowerSpec(file=_saved(twice, tmp_path, "twice.json")), tmp_path, network, sites
        )
    # a JSON file that is not a pandapower network
    (tmp_path / "other.json").write_text(json.dumps({"buses": []}))
    with pytest.raises(ScenarioError, match=r"pandapower\.file: .*other\.json is not a pandapower network"):
        GivenNetGrid.from_spec(PandapowerSpec(file=Path("other.json")), tmp_path, network, sites)


def _suburb_net() -> Any:
    """A planner's model of the generated suburb (sites 6, transformers 2): its own, smaller, ratings."""
    net = pp.create_empty_network()
    bus = {name: pp.create_bus(net, vn_kv=11.0, name=name) for name in ("zone-bus", "mv-1", "mv-2")}
    bus |= {name: pp.create_bus(net, vn_kv=0.415, name=name) for name in ("lv-1", "lv-2")}
    pp.create_ext_grid(net, bus["zone-bus"], vm_pu=1.0)
    for name, a, b in (("line-1", "zone-bus", "mv-1"), ("line-2", "mv-1", "mv-2")):
        pp.create_line_from_parameters(net, bus[a], bus[b], 0.5, 0.24, 0.2, 10.0, 0.3, name=name)
    for t in (1, 2):
        pp.create_transformer_from_parameters(
            net, bus[f"mv-{t}"], bus[f"lv-{t}"], 0.004, 11.0, 0.415, 1.0, 4.0, 0.0, 0.0, name=f"tx-{t}"
        )
    return net


def test_a_short_run_checked_against_a_given_pandapower_network(tmp_path: Path) -> None:
    pp.to_json(_suburb_net(), str(tmp_path / "feeder.json"))
    scenario = parse_scenario(
        {
            "name": "given-net",
            "network": {"generate": {"sites": 6, "transformers": 2, "seed": 2, "export_kva_per_site": 1.0}},
            "start": "2026-12-21T11:00:00",
            "duration_h": 0.5,
            "step_s": 60,
            "pandapower": {"file": "feeder.json"},
        },
        tmp_path,
    )
    out = run_scenario(scenario, tmp_path / "work")
    figs = write_report(out, tmp_path / "report")
    assert figs["powerflow"] == "ac"
    assert figs["powerflow_network"] == {
        "source": "pandapower",
        "file": "feeder.json",
        "buses": 5,
        "lines": 2,
        "trafos": 2,
        "constraints": len(out.recording.constraints),
        "background": "engine",
    }
    assert figs["run"]["powerflow"]["solves"] >= 30 and figs["steps_not_solved"] == 0
    names = {c.name for c in out.recording.constraints}
    assert {"thermal:trafo:tx-1:export", "thermal:line:line-2:import", "voltage:lv-2:max"} <= names
    assert not any(n.startswith("thermal:zone-tx") for n in names)  # the engine's branches are not in it
    # 4 kVA transformers under three houses' midday export: the planner's ratings are exceeded
    assert any(e["constraint"].startswith("thermal:trafo:") for e in figs["violations"]["events"])
    # the engine's own view is kept beside it, over the engine's constraint names
    linear_names = {e["constraint"] for e in figs["violations_linear"]["events"]}
    assert linear_names <= {c.name for c in out.constraints_linear}
    assert "thermal:tx-1:export" in {c.name for c in out.constraints_linear}
    # the recorded values are the given net's solve of what the fleet did
    net, specs, rec = out.network.network, [s.spec for s in out.sites], out.recording
    k = 15
    background = Background(net, out.start_s, out.end_s, scenario.server.envelope_interval_s)
    bg = background.at(float(rec.times_s[k]))
    fresh = GivenNetGrid.from_spec(PandapowerSpec(file=Path("feeder.json")), tmp_path, net, specs)
    # to the solver tolerance (1e-8 MVA of mismatch is 0.01 W; warm start against a flat one)
    np.testing.assert_allclose(rec.value[k], fresh.solve(rec.net_export_w[k], bg).value, rtol=1e-5)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "given pandapower network **feeder.json** (5 buses, 2 lines, 2 transformers" in text
    assert "violations on the engine's own network" in text
