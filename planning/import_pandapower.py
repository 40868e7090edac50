"""A pandapower network as a GridShare network document: buses, lines, transformers, loads, generators.

What the engine needs from a planner's model, converted once here (docs/network-format.md):

* Closed bus-bus switches fuse their buses into one node; an open line or transformer switch takes
  that element out. The result must be one radial tree fed from the single in-service `ext_grid`
  (an open-ring feeder with its normally-open points open is one); a loop is an error naming the
  element that closes it. Parallel elements between the same two nodes become one branch (their
  impedances in parallel, their ratings added).
* Lines: R and X in ohms (per km x length / parallel) at the from-bus voltage; rating
  sqrt(3) x vn_kv x max_i_ka x df x parallel x max_loading_percent / 100, in kW at the power factor.
  Transformers: the short-circuit impedance referred to the low-voltage side (vk_percent,
  vkr_percent, sn_mva), rating sn_mva x df x parallel x max_loading_percent / 100 at the power
  factor. A SimBench transformer with automatic tap control (`autoTap`, `autoTapSetp`) regulates
  its low-voltage bus (`regulate_pu`); other taps are taken at their neutral ratio (noted).
* Bus voltage bounds from `min_vm_pu` / `max_vm_pu` where the file has them.
* Loads are background (node `load_kw`); static generators are dynamic sites or, if not chosen,
  background generation (node `pv_kw`, any technology). Storage and voltage-controlled generators
  are left out and noted.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from gridshare.planning.errors import MissingDependency, NetworkInputError

SiteChoice = Literal["sgen", "none"]
DEFAULT_POWER_FACTOR = 0.95


def require_pandapower() -> Any:
    """pandapower, or a MissingDependency naming the extra that brings it."""
    import logging

    logging.getLogger("pandapower").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pandapower
    except ImportError as exc:
        raise MissingDependency(
            "importing pandapower networks needs pandapower: pip install 'gridshare[planning]'"
        ) from exc
    return pandapower


@dataclass
class ImportedNetwork:
    """A network document in GridShare's format plus what the study and the AC check need."""

    doc: dict[str, Any]
    net: Any  # the pandapower net as imported (switch states applied), for the AC check
    node_buses: dict[str, list[int]]  # node name -> pandapower bus indices fused into it
    site_elements: dict[str, int]  # site id -> sgen index
    background_loads: dict[str, list[int]]  # node name -> load indices
    background_sgens: dict[str, list[int]]  # node name -> sgen indices not made sites
    technology: dict[str, str]  # site id -> technology (profile column) name
    source: str
    notes: list[str] = field(default_factory=list)
    #: engine branch name -> the pandapower elements it stands for, as [table, index] pairs
    branch_elements: dict[str, list[list[Any]]] = field(default_factory=dict)


def _clean(value: Any, fallback: str) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()
    text = re.sub(r"[\s/\\:]+", " ", text).strip()
    return text or fallback


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            out.append(f"{name} #{seen[name]}")
        else:
            seen[name] = 1
            out.append(name)
    return out


def _finite(value: Any, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _technology(kind: Any) -> str:
    text = "" if kind is None or (isinstance(kind, float) and math.isnan(kind)) else str(kind).lower()
    if not text or "pv" in text or "solar" in text or text == "lv_res":
        return "pv"
    if "wind" in text or text.startswith("wp") or text == "wt":
        return "wind"
    for name in ("hydro", "biomass", "chp", "fuel cell"):
        if name in text:
            return name.replace(" ", "-")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "pv"


class _Fuse:
    """Union-find over bus indices (closed bus-bus switches)."""

    def __init__(self, buses: Iterable[int]) -> None:
        self.parent = {b: b for b in buses}

    def find(self, b: int) -> int:
        while self.parent[b] != b:
            self.parent[b] = self.parent[self.parent[b]]
            b = self.parent[b]
        return b

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _in_service(table: Any) -> Any:
    return table[table["in_service"].astype(bool)] if "in_service" in table.columns else table


def import_pandapower(
    net: Any,
    *,
    name: str = "pandapower network",
    source: str = "pandapower net",
    sites: SiteChoice = "sgen",
    power_factor: float = DEFAULT_POWER_FACTOR,
    timezone: str = "UTC",
    latitude_deg: float = 51.0,
    longitude_deg: float = 10.0,
    v_min_pu: float = 0.94,
    v_max_pu: float = 1.10,
) -> ImportedNetwork:
    """Convert `net`; raises NetworkInputError (naming the table and element) when it cannot be radial."""
    pp = require_pandapower()
    if not isinstance(net, pp.pandapowerNet):
        raise NetworkInputError("is not a pandapower network", source)
    if not 0 < power_factor <= 1:
        raise NetworkInputError(f"must be in (0, 1], got {power_factor}", source, "power_factor")
    notes: list[str] = []
    bus = net.bus
    live_bus = set(int(b) for b in bus.index[bus["in_service"].astype(bool)])
    fuse = _Fuse(live_bus)
    line_out: set[int] = set()
    trafo_out: set[int] = set()
    if len(net.switch):
        for _, sw in net.switch.iterrows():
            closed = bool(sw["closed"])
            et, b, el = str(sw["et"]), int(sw["bus"]), int(sw["element"])
            if et == "b" and closed and b in live_bus and el in live_bus:
                fuse.union(b, el)
            elif et == "l" and not closed:
                line_out.add(el)
            elif et == "t" and not closed:
                trafo_out.add(el)
    for table in ("trafo3w", "impedance", "dcline", "tcsc", "ssc", "vsc"):
        if table in net and len(_in_service(net[table])):
            raise NetworkInputError(
                f"has {len(_in_service(net[table]))} in-service {table} elements, which the radial "
                "engine model cannot represent",
                source,
                table,
            )
    grids = _in_service(net.ext_grid)
    if len(grids) != 1:
        raise NetworkInputError(
            f"needs exactly one in-service ext_grid (the feeding point), has {len(grids)}", source, "ext_grid"
        )
    root_bus = fuse.find(int(grids["bus"].iloc[0]))
    source_vm = _finite(grids["vm_pu"].iloc[0], 1.0)

    # ---- edges (line or trafo) between fused buses
    edges: list[dict[str, Any]] = []
    lines = _in_service(net.line)
    for idx, ln in lines.iterrows():
        a, b = int(ln["from_bus"]), int(ln["to_bus"])
        if idx in line_out or a not in live_bus or b not in live_bus:
            continue
        parallel = max(_finite(ln.get("parallel", 1), 1.0), 1.0)
        vn = float(bus.at[a, "vn_kv"])
        amps = float(ln["max_i_ka"]) * 1000.0 * _finite(ln.get("df", 1.0), 1.0) * parallel
        loading = _finite(ln.get("max_loading_percent", 100.0), 100.0) / 100.0
        edges.append(
            {
                "table": "line",
                "index": int(idx),
                "name": _clean(ln.get("name"), f"line {idx}"),
                "a": fuse.find(a),
                "b": fuse.find(b),
                "z": complex(float(ln["r_ohm_per_km"]), float(ln["x_ohm_per_km"]))
                * float(ln["length_km"])
                / parallel,
                "base_kv": vn,
                "rating_kw": math.sqrt(3) * vn * amps * power_factor * loading,
                "kind": "line",
                "regulate": None,
                "elements": [["line", int(idx)]],
            }
        )
    trafos = _in_service(net.trafo)
    for idx, tr in trafos.iterrows():
        hv, lv = int(tr["hv_bus"]), int(tr["lv_bus"])
        if idx in trafo_out or hv not in live_bus or lv not in live_bus:
            continue
        parallel = max(_finite(tr.get("parallel", 1), 1.0), 1.0)
        sn, vn_lv = float(tr["sn_mva"]), float(tr["vn_lv_kv"])
        z_base = vn_lv**2 / sn
        z_abs = float(tr["vk_percent"]) / 100.0 * z_base
        r = float(tr["vkr_percent"]) / 100.0 * z_base
        x = math.sqrt(max(z_abs**2 - r**2, 0.0))
        loading = _finite(tr.get("max_loading_percent", 100.0), 100.0) / 100.0
        regulate = None
        if _finite(tr.get("autoTap", 0), 0.0) == 1 and str(tr.get("autoTapSide", "lv")).lower() == "lv":
            regulate = _finite(tr.get("autoTapSetp"), math.nan)
            regulate = regulate if math.isfinite(regulate) and 0.8 <= regulate <= 1.2 else None
        if regulate is None and _finite(tr.get("tap_pos"), 0.0) != _finite(tr.get("tap_neutral"), 0.0):
            notes.append(
                f"transformer {_clean(tr.get('name'), str(idx))}: tap position taken at its neutral ratio"
            )
        edges.append(
            {
                "table": "trafo",
                "index": int(idx),
                "name": _clean(tr.get("name"), f"trafo {idx}"),
                "a": fuse.find(hv),
                "b": fuse.find(lv),
                "z": complex(r, x) / parallel,
                "base_kv": vn_lv,
                "rating_kw": sn
                * 1000.0
                * _finite(tr.get("df", 1.0), 1.0)
                * parallel
                * power_factor
                * loading,
                "kind": "transformer",
                "regulate": regulate,
                "elements": [["trafo", int(idx)]],
            }
        )
    fused_loops = [e for e in edges if e["a"] == e["b"]]
    if fused_loops:
        notes.append(f"{len(fused_loops)} element(s) between fused buses left out (closed bus-bus switches)")
    edges = [e for e in edges if e["a"] != e["b"]]
    merged = _merge_parallel(edges, notes)

    # ---- orient as a tree from the root
    adjacency: dict[int, list[int]] = {}
    for k, e in enumerate(merged):
        adjacency.setdefault(e["a"], []).append(k)
        adjacency.setdefault(e["b"], []).append(k)
    seen = {root_bus}
    order = [root_bus]
    tree_edges: set[int] = set()
    for node in order:
        for k in adjacency.get(node, []):
            e = merged[k]
            other = e["b"] if e["a"] == node else e["a"]
            if other in seen:
                continue
            seen.add(other)
            tree_edges.add(k)
            order.append(other)
            e["from"], e["to"] = node, other
    loops = [k for k, e in enumerate(merged) if k not in tree_edges and e["a"] in seen and e["b"] in seen]
    if loops:
        names = ", ".join(f"{merged[k]['table']} {merged[k]['name']!r}" for k in loops[:3])
        raise NetworkInputError(
            f"is meshed: {len(loops)} element(s) close a loop ({names}); the engine plans on a radial "
            "network: open a switch or set the element out of service",
            source,
            merged[loops[0]]["table"],
        )
    reachable = set(order)
    fused_of: dict[int, list[int]] = {}
    for bus_index in live_bus:
        fused_of.setdefault(fuse.find(bus_index), []).append(bus_index)

    # ---- nodes
    node_names = _unique([_clean(bus.at[g, "name"], f"bus {g}") for g in order])
    node_name = dict(zip(order, node_names, strict=True))
    nodes: list[dict[str, Any]] = []
    for g in order:
        members = sorted(fused_of[g])
        entry: dict[str, Any] = {"name": node_name[g]}
        if g == root_bus:
            entry.update(v_min_pu=None, v_max_pu=None)
        else:
            lo = [_finite(bus.at[m, "min_vm_pu"], math.nan) for m in members] if "min_vm_pu" in bus else []
            hi = [_finite(bus.at[m, "max_vm_pu"], math.nan) for m in members] if "max_vm_pu" in bus else []
            lo = [v for v in lo if math.isfinite(v)]
            hi = [v for v in hi if math.isfinite(v)]
            entry.update(v_min_pu=max(lo) if lo else v_min_pu, v_max_pu=min(hi) if hi else v_max_pu)
        nodes.append(entry)

    branches = []
    elements_of: list[list[list[Any]]] = []
    for k in sorted(tree_edges):
        e = merged[k]
        z = e["z"]
        entry = {
            "name": e["name"],
            "kind": e["kind"],
            "from": node_name[e["from"]],
            "to": node_name[e["to"]],
            "base_kv": round(float(e["base_kv"]), 6),
            "r_ohm": float(z.real),
            "x_ohm": float(z.imag),
            # rounded down to the watt: a rating is never overstated
            "rating": {
                "export_kw": math.floor(e["rating_kw"] * 1000) / 1000,
                "import_kw": math.floor(e["rating_kw"] * 1000) / 1000,
            },
        }
        if e["regulate"] is not None:
            entry["regulate_pu"] = e["regulate"]
        branches.append(entry)
        elements_of.append(e["elements"])
    branch_names = _unique([entry["name"] for entry in branches])
    for entry, unique_name in zip(branches, branch_names, strict=True):
        entry["name"] = unique_name

    # ---- loads, generators, sites
    node_load: dict[str, float] = {}
    background_loads: dict[str, list[int]] = {}
    dropped_mw = 0.0
    for idx, ld in _in_service(net.load).iterrows():
        at = fuse.find(int(ld["bus"])) if int(ld["bus"]) in live_bus else None
        p_kw = float(ld["p_mw"]) * _finite(ld.get("scaling", 1.0), 1.0) * 1000.0
        if at is None or at not in reachable:
            dropped_mw += p_kw / 1000.0
            continue
        node_load[node_name[at]] = node_load.get(node_name[at], 0.0) + max(p_kw, 0.0)
        background_loads.setdefault(node_name[at], []).append(int(idx))
    site_docs: list[dict[str, Any]] = []
    site_elements: dict[str, int] = {}
    technology: dict[str, str] = {}
    node_gen: dict[str, float] = {}
    background_sgens: dict[str, list[int]] = {}
    sgens = _in_service(net.sgen)
    site_ids = _unique([_clean(s.get("name"), f"sgen {i}") for i, s in sgens.iterrows()])
    for (idx, sg), site_id in zip(sgens.iterrows(), site_ids, strict=True):
        at = fuse.find(int(sg["bus"])) if int(sg["bus"]) in live_bus else None
        p_kw = float(sg["p_mw"]) * _finite(sg.get("scaling", 1.0), 1.0) * 1000.0
        if at is None or at not in reachable:
            dropped_mw += p_kw / 1000.0
            continue
        if sites == "sgen" and p_kw > 0:
            tech = _technology(sg.get("type"))
            site_docs.append(
                {
                    "id": site_id,
                    "node": node_name[at],
                    "max_export_kw": round(p_kw, 3),
                    "max_import_kw": 0.0,
                    "queue_position": len(site_docs),
                    "agreement": {"type": "dynamic"},
                    "forecast": {"pv_kw": round(p_kw, 3), "load_kw": 0.0, "load_profile": "flat"},
                }
            )
            site_elements[site_id] = int(idx)
            technology[site_id] = tech
        else:
            node_gen[node_name[at]] = node_gen.get(node_name[at], 0.0) + max(p_kw, 0.0)
            background_sgens.setdefault(node_name[at], []).append(int(idx))
    for n in nodes:
        if node_load.get(n["name"]):
            n["load_kw"] = round(node_load[n["name"]], 3)
        if node_gen.get(n["name"]):
            n["pv_kw"] = round(node_gen[n["name"]], 3)
    if dropped_mw > 0:
        notes.append(
            f"{dropped_mw:.3f} MW of loads and generators on buses not fed from the ext_grid left out"
        )
    for table in ("storage", "gen", "ward", "xward", "shunt"):
        if table in net and len(_in_service(net[table])):
            notes.append(
                f"{len(_in_service(net[table]))} {table} element(s) not modelled by the engine (left out)"
            )
    unreachable = live_bus - {b for g in reachable for b in fused_of[g]}
    if unreachable:
        notes.append(f"{len(unreachable)} in-service bus(es) not fed from the ext_grid left out")

    doc: dict[str, Any] = {
        "name": name,
        "power_factor": power_factor,
        "source_voltage_pu": source_vm,
        "timezone": timezone,
        "location": {"latitude_deg": latitude_deg, "longitude_deg": longitude_deg},
        "voltage": {"min_pu": v_min_pu, "max_pu": v_max_pu},
        "network": {"nodes": nodes, "branches": branches},
        "sites": site_docs,
    }
    return ImportedNetwork(
        doc=doc,
        net=net,
        node_buses={node_name[g]: sorted(fused_of[g]) for g in order},
        site_elements=site_elements,
        background_loads=background_loads,
        background_sgens=background_sgens,
        technology=technology,
        source=source,
        notes=notes,
        branch_elements={b["name"]: els for b, els in zip(branches, elements_of, strict=True)},
    )


def _merge_parallel(edges: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """One edge per node pair: impedances in parallel, ratings added, names joined."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for e in edges:
        groups.setdefault((min(e["a"], e["b"]), max(e["a"], e["b"])), []).append(e)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        admittance = sum(1 / e["z"] if abs(e["z"]) > 0 else complex(1e12) for e in group)
        first = dict(group[0])
        first["z"] = 1 / admittance
        first["rating_kw"] = sum(e["rating_kw"] for e in group)
        first["name"] = " + ".join(e["name"] for e in group)
        first["elements"] = [el for e in group for el in e["elements"]]
        regulated = [e["regulate"] for e in group if e["regulate"] is not None]
        first["regulate"] = regulated[0] if regulated else None
        out.append(first)
        notes.append(f"parallel elements {first['name']} modelled as one branch")
    return out


def builtin_network(name: str) -> Any:
    """One of pandapower's bundled networks (`pandapower.networks.<name>()`), e.g. mv_oberrhein."""
    pp = require_pandapower()
    import pandapower.networks as networks

    factory = getattr(networks, name, None)
    if factory is None or not callable(factory) or name.startswith("_"):
        known = sorted(n for n in dir(networks) if not n.startswith("_") and callable(getattr(networks, n)))
        raise NetworkInputError(
            f"pandapower has no bundled network {name!r} (e.g. {', '.join(known[:6])}, ...)",
            "pandapower",
            "name",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = factory()
    if not isinstance(net, pp.pandapowerNet):
        raise NetworkInputError(
            f"pandapower.networks.{name}() did not return a network", "pandapower", "name"
        )
    return net


def read_pandapower_json(path: str) -> Any:
    """A network saved with `pandapower.to_json`."""
    pp = require_pandapower()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = pp.from_json(path)
    except FileNotFoundError:
        raise NetworkInputError("no such file", path) from None
    except Exception as exc:  # pandapower raises anything from UserWarning to AttributeError here
        raise NetworkInputError(f"is not a pandapower network ({exc})", path) from None
    if not isinstance(net, pp.pandapowerNet):
        raise NetworkInputError("is not a pandapower network", path)
    return net
