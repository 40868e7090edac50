"""The network file loader: a valid document loads; every mistake is named by its path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridshare.grid.agreements import Dynamic, Scheduled, Staggered
from gridshare.grid.examples import demo_feeder_path
from gridshare.grid.netfile import load_network_file, parse_network_document
from gridshare.grid.network import NetworkError

DEMO = demo_feeder_path()

BASE: dict[str, Any] = {
    "power_factor": 0.9,
    "timezone": "America/New_York",
    "network": {
        "nodes": [{"name": "hv"}, {"name": "bus"}, {"name": "lv", "v_max_pu": 1.08}],
        "branches": [
            {"name": "zone", "from": "hv", "to": "bus", "base_kv": 12.47, "rating": "dominion/12-16-20"},
            {
                "name": "dt",
                "from": "bus",
                "to": "lv",
                "base_kv": 0.416,
                "r_ohm": 0.004,
                "rating": {"kva": 500},
            },
        ],
    },
    "sites": [
        {
            "id": "s1",
            "node": "lv",
            "max_export_kw": 10,
            "max_import_kw": 15,
            "agreement": {"type": "dynamic"},
        },
    ],
}


def _doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc.update(changes)
    return doc


def _error(doc: Any) -> str:
    with pytest.raises(NetworkError) as info:
        parse_network_document(doc)
    return str(info.value)


def test_valid_document_loads_with_ratings_in_kw() -> None:
    nf = parse_network_document(_doc())
    zone, dt = nf.network.branches
    assert zone.rating is not None and zone.rating.export_w / 1000 == pytest.approx(12_000 * 0.9)
    assert dt.rating is not None and dt.rating.import_w / 1000 == pytest.approx(450)
    assert nf.network.nodes[2].v_max_pu == 1.08 and nf.network.nodes[2].v_min_pu == 0.94
    assert isinstance(nf.sites[0].agreement, Dynamic)


def test_demo_feeder_loads(tmp_path: Path) -> None:
    nf = load_network_file(DEMO)
    assert len(nf.sites) == 30
    assert {type(s.agreement).__name__ for s in nf.sites} == {
        "Firm",
        "Limited",
        "Scheduled",
        "Staggered",
        "Dynamic",
    }
    zone = next(b for b in nf.network.branches if b.name == "zone-tx")
    assert zone.rating is not None and zone.rating.source == "dominion/12-16-20"
    # The same document as JSON loads to the same model.
    as_json = tmp_path / "demo.json"
    as_json.write_text(json.dumps(yaml.safe_load(DEMO.read_text()), default=str))
    assert load_network_file(as_json).network == nf.network


def test_unknown_preset_names_the_branch_rating() -> None:
    doc = _doc()
    doc["network"]["branches"][1]["rating"] = "dominion/x"
    assert "network.branches[1].rating: unknown preset 'dominion/x'" in _error(doc)


def test_every_problem_is_reported_at_once() -> None:
    doc = _doc()
    doc["network"]["branches"][0]["rating"] = {"kva": -5}
    doc["sites"][0]["node"] = "nowhere"
    doc["sites"].append(dict(doc["sites"][0], node="lv"))
    message = _error(doc)
    assert "network.branches[0].rating.kva: must be > 0" in message
    # Structural errors come after field errors are fixed; field errors are all listed.
    doc["network"]["branches"][0]["rating"] = {"kva": 5}
    message = _error(doc)
    assert "sites[0].node: unknown node 'nowhere'" in message
    assert "sites[1].id: duplicate site id 's1'" in message


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["network"]["branches"].append(
                {"name": "loop", "from": "lv", "to": "hv", "base_kv": 1}
            ),
            "network.branches: every node is fed by a branch: the network has a cycle",
        ),
        (
            lambda d: d["network"]["branches"].append(
                {"name": "dup", "from": "hv", "to": "lv", "base_kv": 1}
            ),
            "network.branches[2].to: node 'lv' is already fed by branches[1]",
        ),
        (
            lambda d: d["network"]["nodes"].append({"name": "island"}),
            "exactly one root (a node no branch feeds)",
        ),
        (
            lambda d: d["network"]["nodes"].append({"name": "bus"}),
            "network.nodes[3].name: duplicate node name 'bus'",
        ),
        (
            lambda d: d["network"]["branches"][1].update(to="mars"),
            "network.branches[1].to: unknown node 'mars'",
        ),
        (lambda d: d["network"]["branches"][1].update(base_kv=0), "network.branches[1].base_kv: must be > 0"),
        (lambda d: d["network"]["branches"][1].update(ratng=5), "network.branches[1].ratng: unknown field"),
        (lambda d: d["network"]["nodes"][2].update(v_min_pu=1.2), "network.nodes[2].v_min_pu: must be below"),
        (lambda d: d.update(power_factor=1.5), "power_factor: must be in (0, 1]"),
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone: unknown time zone"),
        (
            lambda d: d["sites"][0].update(agreement={"type": "maybe"}),
            "sites[0].agreement.type: unknown agreement",
        ),
        (
            lambda d: d["sites"][0].update(agreement={"type": "dynamic", "export_floor_kw": 50}),
            "sites[0].agreement.export_floor_kw: 50.0 kW exceeds",
        ),
        (
            lambda d: d["sites"][0].update(agreement={"type": "scheduled", "export_kw": [1, 2]}),
            "sites[0].agreement.export_kw: has shape (2,)",
        ),
        (
            lambda d: d["sites"][0].update(agreement={"type": "staggered", "before": {"export_kw": 1}}),
            "sites[0].agreement.switch_at: is required",
        ),
        (
            lambda d: d["sites"][0].update(queue_position=-1),
            "sites[0].queue_position: must be a whole number",
        ),
        (lambda d: d["sites"][0].pop("agreement"), "sites[0].agreement: is required"),
        (lambda d: d["sites"][0].update(max_export_kw="lots"), "sites[0].max_export_kw: must be a number"),
    ],
)
def test_mistakes_are_named_by_path(mutate: Any, expected: str) -> None:
    doc = _doc()
    mutate(doc)
    assert expected in _error(doc)


def test_cycle_is_reported_as_unreachable_nodes() -> None:
    doc = _doc()
    doc["network"]["nodes"] += [{"name": "x"}, {"name": "y"}]
    doc["network"]["branches"] += [
        {"name": "xy", "from": "x", "to": "y", "base_kv": 1},
        {"name": "yx", "from": "y", "to": "x", "base_kv": 1},
    ]
    message = _error(doc)
    assert "network.nodes[3]: node 'x' is not reachable from the root 'hv'" in message


def test_agreements_parse_dates_and_schedules() -> None:
    doc = _doc()
    doc["sites"] = [
        {
            "id": "a",
            "node": "lv",
            "max_export_kw": 5,
            "max_import_kw": 5,
            "agreement": {"type": "staggered", "switch_at": "2026-09-01", "before": {"export_kw": 1}},
        },
        {
            "id": "b",
            "node": "lv",
            "max_export_kw": 5,
            "max_import_kw": 5,
            "agreement": {"type": "scheduled", "import_kw": list(range(24))},
        },
    ]
    a, b = parse_network_document(doc).sites
    assert isinstance(a.agreement, Staggered)
    assert a.agreement.switch_at.isoformat() == "2026-09-01T00:00:00-04:00"
    assert isinstance(b.agreement, Scheduled) and b.agreement.import_w is not None
    assert b.agreement.import_w[6, 13] / 1000 == 13


def test_bad_yaml_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("network:\n  nodes: [\n")
    with pytest.raises(NetworkError, match="invalid YAML at line"):
        load_network_file(path)


def test_missing_file_is_a_network_error(tmp_path: Path) -> None:
    with pytest.raises(NetworkError, match="cannot read"):
        load_network_file(tmp_path / "absent.yaml")
