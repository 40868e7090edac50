"""Importing real benchmark networks, and the AC power-flow check of a year's envelopes on them.

SimBench ships its grids and 2016 profiles inside the `simbench` wheel (offline); pandapower ships
its test networks. The importer must turn them into the engine's network format faithfully (ratings
from the element data, bus-bus switches fused, parallel transformers merged, a loop refused by
name), and the AC check must both find the envelopes safe and catch an overload when there is one.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pandapower")
pytest.importorskip("simbench")

from gridshare.planning import Study
from gridshare.planning.acpass import ac_check
from gridshare.planning.errors import NetworkInputError
from gridshare.planning.import_pandapower import import_pandapower
from gridshare.planning.inputs import load_network, write_import_dir
from gridshare.planning.yearrun import run_year

LV = "simbench:1-LV-rural1--0-sw"


@pytest.fixture(scope="module")
def lv_study() -> Study:
    return Study.load(LV, interval="1h")


def test_simbench_lv_grid_and_its_year_of_profiles(lv_study: Study) -> None:
    loaded = lv_study.loaded
    net = loaded.nf.network
    assert (len(net.nodes), len(net.branches), len(loaded.nf.sites)) == (15, 14, 4)
    table = loaded.profiles
    assert table is not None and len(table) == 35_136 and table.step_s == 900  # 2016, quarter-hours
    # a line's rating is sqrt(3) x V x I x pf from the file's max_i_ka (0.27 kA NAYY 4x150 at 0.4 kV)
    pp_line = loaded.imported.net.line.iloc[0]  # type: ignore[union-attr]
    branch = next(b for b in net.branches if b.name == pp_line["name"])
    expected_kw = math.sqrt(3) * 0.4 * pp_line["max_i_ka"] * 1000 * 0.95
    assert branch.rating is not None
    assert expected_kw - 0.001 <= branch.rating.export_w / 1000 <= expected_kw  # to the watt, never above
    # the transformer: sn_mva x pf, impedance referred to the LV side
    tx = next(b for b in net.branches if b.kind == "transformer")
    assert tx.rating is not None and tx.rating.export_w / 1000 == pytest.approx(160 * 0.95)
    assert tx.base_kv == pytest.approx(0.4)
    # every site brings its own generation shape; every loaded node its own load shape
    assert {f"pv:{s.id}" for s in loaded.nf.sites} <= set(table.shapes)
    assert max(float(v.max()) for v in table.shapes.values()) <= 1.0 + 1e-9


@pytest.fixture(scope="module")
def mv_net():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import simbench

        return simbench.get_simbench_net("1-MV-rural--0-sw")


def test_simbench_mv_parallel_transformers_are_one_regulated_branch(mv_net) -> None:  # type: ignore[no-untyped-def]
    imported = import_pandapower(mv_net, name="mv", source="mv")
    tx = [b for b in imported.doc["network"]["branches"] if b["kind"] == "transformer"]
    assert len(tx) == 1 and "+" in tx[0]["name"]  # two 25 MVA units fused by the busbar coupler
    assert tx[0]["rating"]["export_kw"] == pytest.approx(2 * 25_000 * 0.95)
    assert tx[0]["regulate_pu"] == pytest.approx(1.025)  # SimBench's automatic tap set point
    assert len(imported.doc["sites"]) == 102


def test_a_loop_is_refused_naming_the_element(mv_net) -> None:  # type: ignore[no-untyped-def]
    net = copy.deepcopy(mv_net)
    net.switch.loc[:, "closed"] = True  # close the normally-open points: the rings close
    with pytest.raises(NetworkInputError, match=r"meshed: \d+ element\(s\) close a loop \(line ") as err:
        import_pandapower(net, name="mv", source="mv-closed")
    assert err.value.field == "line"


def test_pandapower_bundled_network_and_json_round_trip(tmp_path: Path) -> None:
    loaded = load_network("pandapower:example_simple")
    assert len(loaded.nf.sites) == 1
    assert any("gen" in n for n in loaded.notes)  # its voltage-controlled generator is left out, said so
    written = write_import_dir(loaded, tmp_path / "imp")
    assert {p.name for p in written} >= {"network.yaml", "pandapower.json", "import.json"}
    again = load_network(tmp_path / "imp")
    assert again.version == loaded.version
    assert again.imported is not None and again.imported.node_buses == loaded.imported.node_buses  # type: ignore[union-attr]
    from_json = load_network(tmp_path / "imp" / "pandapower.json")  # a pandapower.to_json file directly
    assert len(from_json.nf.network.nodes) == len(loaded.nf.network.nodes)


def test_ac_check_finds_the_envelopes_safe_and_catches_an_overload(lv_study: Study) -> None:
    grid = next(iter(lv_study.grids()))
    run = run_year(grid, "pro-rata")
    imported = lv_study.loaded.imported
    assert imported is not None
    check = ac_check(imported, grid, run)
    assert check.hours == 8784 and check.not_converged == 0
    assert check.intervals_violating == 0, check.violations.head()
    assert check.cross_check_max_dv_pu < 1e-6  # same answer as pandapower.runpp
    # envelopes 60 % above what the engine issued must show up as overloads
    run.export_limit_w = run.export_limit_w * 1.6 + 30_000.0
    bad = ac_check(imported, grid, run, cross_checks=0)
    assert bad.intervals_violating > 0
    assert set(bad.violations["case"]) == {"export"}
    assert np.all(bad.violations["value"] > bad.violations["limit"] * 1.01 - 1e-9)
