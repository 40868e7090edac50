"""AC power flow of a planner's own pandapower network, checked against *its* element ratings.

The envelope engine plans on GridShare's radial network file; a planner usually also has a network
model of their own (pandapower JSON, `pp.to_json`) with the real element ratings and the meshed and
multi-voltage detail the engine's radial model simplifies away. `GivenNetGrid` solves that network
with the fleet's recorded exports, as a drop-in for `AcGrid` in `sim.runner.solve_recorded`: each
site injects at the bus its node maps to (by name, or `pandapower.buses`), and either the engine's
background forecast replaces the file's own loads and generators (`background: engine`) or the file's
elements stay as they are (`background: net`).

Constraints are the given net's, per element: every in-service line with a `max_i_ka`, every
in-service two-winding transformer, and every bus with voltage bounds (its own `min_vm_pu`/`max_vm_pu`
columns, else those of the engine nodes mapped to it). Thermal limits are converted to a
W-equivalent with the engine's assumed power factor, as `envelopes.presets.kw_for_amps` does for the
engine's amp ratings (P = sqrt(3) V_LL I pf), so a value over its limit means exactly what
pandapower's `loading_percent` over `max_loading_percent` means.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gridshare.grid.network import Network, Site
from gridshare.sim.acflow import _pandapower
from gridshare.sim.powerflow import Constraint, ConstraintCheck, Solution
from gridshare.sim.scenario import PandapowerSpec, ScenarioError

log = logging.getLogger("gridshare.sim")

SQRT3 = math.sqrt(3.0)
#: Element tables a `background: engine` run switches off: the file's own customers and generation.
BACKGROUND_TABLES = ("load", "sgen", "storage", "asymmetric_load", "asymmetric_sgen")


def _clean(name: Any) -> str:
    """A pandapower name as text ('' for None/NaN: unnamed elements are common in pandapower files)."""
    if name is None or (isinstance(name, float) and math.isnan(name)):
        return ""
    return str(name)


def _labels(names: Sequence[str], indices: Sequence[int], prefix: str) -> list[str]:
    """Unique labels for constraint names: the element's name, made unique by its index where needed."""
    counts = Counter(names)
    return [
        name if name and counts[name] == 1 else (f"{name}#{i}" if name else f"{prefix}{i}")
        for name, i in zip(names, indices, strict=True)
    ]


def _column(table: Any, column: str, default: float = math.nan) -> np.ndarray:
    """A float column, `default` where the table lacks it (optional ones such as max_loading_percent)."""
    if column in table.columns:
        return table[column].to_numpy(dtype=float)
    return np.full(len(table), default)


class GivenNetGrid:
    """Flows, voltages and constraint excess of a given pandapower network, for a vector of site exports.

    `Solution.reverse_flow_w` is per element of `element_names` (in-service lines, then two-winding
    transformers), `Solution.voltage_pu` per bus of `bus_names` (the net's bus table in order).
    """

    def __init__(
        self,
        net: Any,
        network: Network,
        sites: Sequence[Site],
        buses: Mapping[str, str] | None = None,
        background: Literal["engine", "net"] = "engine",
        source: str = "pandapower net",
    ) -> None:
        self._pp = _pandapower()
        if not isinstance(net, self._pp.pandapowerNet):
            raise ScenarioError(f"pandapower.file: {source} is not a pandapower network")
        self._net = net = copy.deepcopy(net)
        self.network = network
        self.source = source
        self.background = background
        self._tan_phi = math.tan(math.acos(network.power_factor))
        self._check_sources()
        node_bus = self._map_nodes(network, sites, dict(buses or {}))
        self.site_bus = np.array([node_bus[s.node] for s in sites], dtype=int)  # pandapower bus indices
        # every site injects at its node's bus; with `background: engine` every mapped node also injects
        # the engine's background forecast there, in place of the file's own customers and generation
        bg_nodes = list(node_bus) if background == "engine" else []
        if background == "engine":
            for table in BACKGROUND_TABLES:
                if table in net and len(net[table]):
                    net[table]["in_service"] = False
        self._bg_nodes = np.array([network.topology.node_index[n] for n in bg_nodes], dtype=int)
        create = self._pp.create_sgen
        self._site_sgen = np.array(
            [
                create(net, node_bus[s.node], p_mw=0.0, q_mvar=0.0, name=f"gridshare:site:{s.id}")
                for s in sites
            ],
            dtype=int,
        )
        self._bg_sgen = np.array(
            [create(net, node_bus[n], p_mw=0.0, q_mvar=0.0, name=f"gridshare:node:{n}") for n in bg_nodes],
            dtype=int,
        )
        self._sgen = np.concatenate([self._site_sgen, self._bg_sgen])
        self._build_constraints(network, node_bus)
        if len(net.get("controller", ())):
            log.warning("%s: its controllers are not run (tap positions and setpoints as saved)", source)
        self._converged = False
        #: solves that did not converge: their steps are left out (NaN), not replaced by another model
        self.diverged = 0
        self.solves = 0
        self.solve_s = 0.0
        self._trial()

    @classmethod
    def from_spec(
        cls, spec: PandapowerSpec, base_dir: Path, network: Network, sites: Sequence[Site]
    ) -> GivenNetGrid:
        """Load the scenario's `pandapower` section; every problem is a ScenarioError naming its field."""
        pp = _pandapower()
        path = spec.file if spec.file.is_absolute() else base_dir / spec.file
        if not path.is_file():
            raise ScenarioError(f"pandapower.file: {path} does not exist")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = pp.from_json(str(path))
        except Exception as exc:  # pandapower raises anything from UserWarning to AttributeError here
            raise ScenarioError(f"pandapower.file: {path} is not a pandapower network ({exc})") from None
        return cls(net, network, sites, spec.buses, spec.background, source=path.name)

    # -- loading -----------------------------------------------------------------------------------
    def _check_sources(self) -> None:
        net = self._net
        if not len(net.bus):
            raise ScenarioError(f"pandapower.file: {self.source} has no buses")
        grids = net.ext_grid[net.ext_grid["in_service"].astype(bool)]
        self._ext_buses = {int(b) for b in grids["bus"]}
        sources = set(self._ext_buses)
        if "slack" in net.gen.columns:
            slack_gens = net.gen[net.gen["in_service"].astype(bool) & net.gen["slack"].astype(bool)]
            sources |= {int(b) for b in slack_gens["bus"]}
        if not sources:
            raise ScenarioError(f"pandapower.file: {self.source} has no in-service ext_grid (no slack bus)")
        self._source_buses = sources

    def _map_nodes(self, network: Network, sites: Sequence[Site], buses: dict[str, str]) -> dict[str, int]:
        """Engine node -> pandapower bus index for every node that maps; all problems are raised at once."""
        net = self._net
        names = [_clean(x) for x in net.bus["name"]]
        by_name: dict[str, list[int]] = {}
        for idx, name in zip(net.bus.index, names, strict=True):
            by_name.setdefault(name, []).append(int(idx))
        in_service = dict(zip(net.bus.index, net.bus["in_service"].astype(bool), strict=True))
        node_names = {n.name for n in network.nodes}
        site_nodes = {s.node: s.id for s in sites}
        need_bg = self.background == "engine"
        problems: list[str] = []
        for mapped in buses:
            if mapped not in node_names:
                problems.append(f"pandapower.buses.{mapped}: the engine network has no node {mapped!r}")
        out: dict[str, int] = {}
        for node in network.nodes:
            bus = buses.get(node.name, node.name)
            field = f"pandapower.buses.{node.name}" if node.name in buses else "pandapower.buses"
            found = by_name.get(bus, [])
            why = ""
            if node.name in site_nodes:
                why = f"site {site_nodes[node.name]}'s node {node.name!r}"
            elif need_bg and (node.load_w > 0 or node.pv_w > 0):
                why = f"node {node.name!r} (customers that are not sites: load_kw/pv_kw)"
            if len(found) > 1:
                problems.append(
                    f"{field}: {len(found)} buses are named {bus!r} in {self.source} "
                    f"(indices {', '.join(map(str, found))}): the mapping of node {node.name!r} is ambiguous"
                )
            elif not found:
                if node.name in buses:
                    problems.append(f"{field}: {self.source} has no bus named {bus!r}")
                elif why:
                    hint = "" if node.name in site_nodes else " or use `pandapower.background: net`"
                    problems.append(
                        f"{field}: {why} has no bus named {bus!r} in {self.source}; "
                        f"map it in `pandapower.buses`{hint}"
                    )
            elif not in_service[found[0]]:
                if not (why or node.name in buses):
                    continue  # nothing injects there: the node simply has no bus in this net
                problems.append(
                    f"{field}: bus {bus!r} of {self.source} (node {node.name!r}) is out of service"
                )
            else:
                out[node.name] = found[0]
        if problems:
            raise ScenarioError("; ".join(problems))
        return out

    def _orientation(self, ends: np.ndarray) -> np.ndarray:
        """Which end of each branch (column 0 or 1) is nearer the slack: hops over in-service branches.

        A meshed net has no single "towards the source"; the nearer end (the first on a tie) is the one
        reverse flow heads for, which on a radial feeder is exactly the engine's convention.
        """
        graph = self._pp.topology.create_nxgraph(self._net, respect_switches=True)
        hops = {b: 0 for b in self._source_buses}
        queue = deque(self._source_buses)
        while queue:
            b = queue.popleft()
            for n in graph.neighbors(b):
                if n not in hops:
                    hops[n] = hops[b] + 1
                    queue.append(n)
        far = math.inf
        d0 = np.array([hops.get(int(b), far) for b in ends[:, 0]], dtype=float)
        d1 = np.array([hops.get(int(b), far) for b in ends[:, 1]], dtype=float)
        return (d1 < d0).astype(int)

    def _build_constraints(self, network: Network, node_bus: dict[str, int]) -> None:
        net, pf = self._net, network.power_factor
        lines = net.line[net.line["in_service"].astype(bool)]
        trafos = net.trafo[net.trafo["in_service"].astype(bool)]
        self._line_idx, self._trafo_idx = lines.index.to_numpy(), trafos.index.to_numpy()
        vn_kv = net.bus["vn_kv"]
        # W-equivalent per kA (times the rated voltage) at each end, as P = sqrt(3) V_LL I pf
        self._line_w_per_ka = SQRT3 * vn_kv.loc[lines["from_bus"]].to_numpy(dtype=float) * 1e6 * pf
        self._trafo_w_per_ka = (
            SQRT3 * np.column_stack([trafos["vn_hv_kv"], trafos["vn_lv_kv"]]).astype(float) * 1e6 * pf
        )
        self._line_up = self._orientation(lines[["from_bus", "to_bus"]].to_numpy())
        self._trafo_up = self._orientation(trafos[["hv_bus", "lv_bus"]].to_numpy())
        line_labels = _labels([_clean(x) for x in lines["name"]], list(self._line_idx), "line")
        trafo_labels = _labels([_clean(x) for x in trafos["name"]], list(self._trafo_idx), "trafo")
        self.element_names = tuple([f"line:{x}" for x in line_labels] + [f"trafo:{x}" for x in trafo_labels])
        # rated loading in W-equivalent: pandapower's own denominators (df and parallel included)
        rated_w = np.concatenate(
            [
                lines["max_i_ka"].to_numpy(dtype=float)
                * _column(lines, "df", 1.0)
                * _column(lines, "parallel", 1.0)
                * self._line_w_per_ka,
                trafos["sn_mva"].to_numpy(dtype=float)
                * _column(trafos, "df", 1.0)
                * _column(trafos, "parallel", 1.0)
                * 1e6
                * pf,
            ]
        )
        share = np.concatenate(
            [_column(lines, "max_loading_percent"), _column(trafos, "max_loading_percent")]
        )
        share = np.where(np.isfinite(share) & (share > 0), share / 100.0, 1.0)
        out: list[Constraint] = []
        for row, (asset, rated, k) in enumerate(zip(self.element_names, rated_w, share, strict=True)):
            if not (np.isfinite(rated) and rated > 0):
                continue
            for direction in ("export", "import"):
                out.append(
                    Constraint(f"thermal:{asset}:{direction}", "thermal", asset, direction, rated * k, row)
                )
        # voltage: the bus's own bounds, else the tightest of the engine nodes mapped to it
        node_by_name = {n.name: n for n in network.nodes}
        node_max: dict[int, float] = {}
        node_min: dict[int, float] = {}
        for name, bus in node_bus.items():
            node = node_by_name[name]
            if node.v_max_pu is not None:
                node_max[bus] = min(node_max.get(bus, math.inf), node.v_max_pu)
            if node.v_min_pu is not None:
                node_min[bus] = max(node_min.get(bus, -math.inf), node.v_min_pu)
        own_max, own_min = _column(net.bus, "max_vm_pu"), _column(net.bus, "min_vm_pu")
        self.bus_names = tuple(_labels([_clean(x) for x in net.bus["name"]], list(net.bus.index), "bus"))
        in_service = net.bus["in_service"].astype(bool).to_numpy()
        for pos, idx in enumerate(net.bus.index):
            if not in_service[pos] or int(idx) in self._ext_buses:
                continue
            v_max = own_max[pos] if np.isfinite(own_max[pos]) else node_max.get(int(idx))
            v_min = own_min[pos] if np.isfinite(own_min[pos]) else node_min.get(int(idx))
            label = self.bus_names[pos]
            if v_max is not None:
                out.append(Constraint(f"voltage:{label}:max", "voltage", label, "export", float(v_max), pos))
            if v_min is not None:
                out.append(Constraint(f"voltage:{label}:min", "voltage", label, "import", float(v_min), pos))
        self._check = ConstraintCheck(out)
        self.constraints = self._check.constraints

    def _trial(self) -> None:
        """One solve with no injections, so that a net pandapower cannot solve at all stops the run now."""
        try:
            self._runpp()
        except self._pp.powerflow.LoadflowNotConverged:
            log.warning("%s: the power flow does not converge with the fleet idle", self.source)
        except Exception as exc:
            raise ScenarioError(f"pandapower.file: pandapower cannot solve {self.source}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        """What the report says about the network that was solved."""
        return {
            "source": "pandapower",
            "file": self.source,
            "buses": int(self._net.bus["in_service"].astype(bool).sum()),
            "lines": len(self._line_idx),
            "trafos": len(self._trafo_idx),
            "constraints": len(self.constraints),
            "background": self.background,
        }

    # -- solving -----------------------------------------------------------------------------------
    def _runpp(self) -> None:
        self._pp.runpp(
            self._net,
            init="results" if self._converged else "auto",
            numba=False,
            calculate_voltage_angles=True,
            max_iteration=30,
        )
        self._converged = True

    def solve(self, site_export_w: np.ndarray, background_w: np.ndarray) -> Solution:
        t0 = time.perf_counter()
        p_w = np.concatenate(
            [np.asarray(site_export_w, dtype=float), np.asarray(background_w, dtype=float)[self._bg_nodes]]
        )
        net = self._net
        net.sgen.loc[self._sgen, "p_mw"] = p_w / 1e6
        net.sgen.loc[self._sgen, "q_mvar"] = p_w * self._tan_phi / 1e6
        try:
            self._runpp()
        except self._pp.powerflow.LoadflowNotConverged:
            self._converged = False
            self.diverged += 1
            if self.diverged == 1:
                log.warning(
                    "%s: AC power flow did not converge; such steps are left out (no violation counted)",
                    self.source,
                )
            nan = np.full(len(self.constraints), np.nan)
            self.solves += 1
            self.solve_s += time.perf_counter() - t0
            return Solution(
                np.full(len(self.element_names), np.nan),
                np.full(len(self.bus_names), np.nan),
                nan,
                nan.copy(),
            )
        flows = self._flows()
        volts = net.res_bus["vm_pu"].to_numpy(dtype=float)
        value, excess = self._check.evaluate(flows, volts)
        self.solves += 1
        self.solve_s += time.perf_counter() - t0
        return Solution(flows, volts, value, excess)

    def _flows(self) -> np.ndarray:
        """Signed W-equivalent loading per element: positive towards the slack (reverse flow)."""
        net = self._net
        out = []
        for res, w_per_ka, up, cols in (
            (net.res_line.loc[self._line_idx], self._line_w_per_ka[:, None], self._line_up, ("from", "to")),
            (net.res_trafo.loc[self._trafo_idx], self._trafo_w_per_ka, self._trafo_up, ("hv", "lv")),
        ):
            current = np.column_stack([res[f"i_{c}_ka"].to_numpy(dtype=float) for c in cols])
            power = np.column_stack([res[f"p_{c}_mw"].to_numpy(dtype=float) for c in cols])
            loading_w = np.max(current * w_per_ka, axis=1) if len(res) else np.zeros(0)
            rows = np.arange(len(res))
            # power flowing into the element at each end: towards the slack is into its far end
            p_up, p_down = power[rows, up], power[rows, 1 - up]
            out.append(np.where(p_down - p_up > 0, loading_w, -loading_w))
        return np.concatenate(out)


__all__ = ["GivenNetGrid"]
