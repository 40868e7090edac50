"""AC power flow (pandapower) of the engine's own network model, as a drop-in for `LinearGrid`.

The envelope engine plans on a linearised model (LinDistFlow without losses, V ~= 1 pu). Solving
the same network with a full AC power flow from the fleet's actual behaviour adds what that model
leaves out: losses (an importing feeder carries its customers' load plus I^2 R, an exporting one
delivers less than its customers export) and the nonlinearity of voltage in power (a sagging bus
draws more current, a rising one less). A violation the AC solve counts but the linear one does
not is therefore the engine's linearisation error, not a disagreement between the envelopes and
the fleet.

The translation keeps the model's meaning exactly: every branch's R/X (ohms referred to its
`base_kv`) becomes a per-unit series impedance on a 1 MVA base, which is what the linear model's
(R + X tan phi) / V_base^2 coefficients are linearised from; each node injects P with
Q = P tan(phi) (the engine's assumed power factor, vars exported with watts). A branch with
`regulate_pu` is an ideal regulator: the network is cut there, the part below it is solved with its
node held at the setpoint, and the power it then draws (losses included) is a load on the part above.
Thermal values are apparent power at the more loaded end times the power factor: the same
conversion that turned the kVA and amp ratings into the kW limits they are compared with.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridshare.grid.network import Network, Site
from gridshare.grid.units import V_PER_KV
from gridshare.sim.powerflow import (
    Constraint,
    ConstraintCheck,
    LinearGrid,
    Solution,
    constraint_list,
)

log = logging.getLogger("gridshare.sim")

#: Per-unit power base (VA). The result does not depend on it; 1 MVA keeps feeder values near 0.1-10 pu.
BASE_VA = 1e6
#: A branch given with R = X = 0 still needs an impedance for the solver (fused buses would hide its flow).
MIN_Z_PU = 1e-6


class AcUnavailable(RuntimeError):
    """pandapower is not installed: AC power flow is the optional `ac` extra."""


def _pandapower() -> Any:
    # pandapower narrates its optional imports (plotly, numba) at INFO; the progress bar has no room
    logging.getLogger("pandapower").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pandapower
    except ImportError as exc:
        raise AcUnavailable(
            "`powerflow: ac` needs pandapower: pip install 'gridshare[ac]' (or pip install pandapower)"
        ) from exc
    return pandapower


@dataclass
class _Zone:
    """The part of the network between a source (the root, or a regulator) and the regulators below it."""

    slack: int  # node held at a fixed voltage: the root, or a regulated branch's to-node
    setpoint_pu: float
    nodes: list[int]  # every node of the zone, slack first
    branches: list[int]  # branches inside the zone, and the regulated branches leaving it
    children: list[int]  # regulated branches leaving the zone (their to-node is another zone's slack)
    net: Any = None  # pandapower net; None for a zone that is only a source and its regulators
    bus_nodes: np.ndarray | None = None  # node of each pandapower bus in order (nodes, then mirrors)
    n_own: int = 0  # the first n_own buses are the zone's nodes; the rest mirror regulated nodes below


class AcGrid:
    """Flows, voltages and constraint excess from an AC power flow, for a vector of site net exports."""

    def __init__(self, network: Network, sites: Sequence[Site]) -> None:
        self._pp = _pandapower()
        self.network = network
        topo = network.topology
        self.site_node = np.array([topo.node_index[s.node] for s in sites], dtype=int)
        self.n_nodes = len(network.nodes)
        self._check = ConstraintCheck(constraint_list(network))
        self.constraints = self._check.constraints
        self._tan_phi = math.tan(math.acos(network.power_factor))
        self._z_pu = np.array(
            [
                complex(max(br.r_ohm, 0.0), br.x_ohm) * BASE_VA / (br.base_kv * V_PER_KV) ** 2
                for br in network.branches
            ]
        )
        self._zones = self._build_zones()
        self._linear: LinearGrid | None = None
        #: steps whose AC solve did not converge (the linear solution was used for them)
        self.diverged = 0
        self.solves = 0
        self.solve_s = 0.0

    # -- building ----------------------------------------------------------------------------------
    def _build_zones(self) -> list[_Zone]:
        """Cut the tree at every regulator; zones come deepest first, so each is solved after those below."""
        net, topo = self.network, self.network.topology
        children: dict[int, list[int]] = {}
        for b, br in enumerate(net.branches):
            children.setdefault(topo.node_index[br.from_node], []).append(b)
        zones: list[tuple[int, _Zone]] = []
        sources = [(topo.root, net.source_voltage_pu, 0)]
        while sources:
            slack, setpoint, depth = sources.pop()
            zone = _Zone(slack, setpoint, [slack], [], [])
            stack = [slack]
            while stack:
                node = stack.pop()
                for b in children.get(node, []):
                    br = net.branches[b]
                    to = topo.node_index[br.to_node]
                    zone.branches.append(b)
                    if br.regulate_pu is not None:
                        zone.children.append(b)
                        sources.append((to, br.regulate_pu, depth + 1))
                    else:
                        zone.nodes.append(to)
                        stack.append(to)
            zones.append((depth, zone))
        zones.sort(key=lambda dz: -dz[0])
        out = [z for _, z in zones]
        for zone in out:
            if len(zone.nodes) > 1:
                self._build_net(zone)
        return out

    def _build_net(self, zone: _Zone) -> None:
        pp, network, topo = self._pp, self.network, self.network.topology
        net = pp.create_empty_network(sn_mva=BASE_VA / 1e6)
        bus: dict[int, int] = {}
        for n in zone.nodes:
            fed_by = topo.parent_branch[n]
            kv = (
                network.branches[fed_by].base_kv
                if fed_by >= 0
                else network.branches[zone.branches[0]].base_kv
            )
            bus[n] = pp.create_bus(net, vn_kv=kv, name=network.nodes[n].name)
        for b in zone.children:  # the regulator's far side, seen from above: a load, set per solve
            to = topo.node_index[network.branches[b].to_node]
            bus[to] = pp.create_bus(
                net, vn_kv=network.branches[b].base_kv, name=f"{network.nodes[to].name}@up"
            )
        pp.create_ext_grid(net, bus[zone.slack], vm_pu=zone.setpoint_pu, va_degree=0.0)
        for b in zone.branches:
            br = network.branches[b]
            z = self._z_pu[b]
            pp.create_impedance(
                net,
                bus[topo.node_index[br.from_node]],
                bus[topo.node_index[br.to_node]],
                rft_pu=max(z.real, MIN_Z_PU),
                xft_pu=max(z.imag, MIN_Z_PU),
                sn_mva=BASE_VA / 1e6,
                name=br.name,
            )
        # one injection per bus (nodes in order, then the mirrors), values replaced every solve
        for n in bus:
            pp.create_sgen(net, bus[n], p_mw=0.0, q_mvar=0.0)
        zone.net, zone.bus_nodes, zone.n_own = net, np.array(list(bus), dtype=int), len(zone.nodes)

    # -- solving -----------------------------------------------------------------------------------
    def injections_w(self, site_export_w: np.ndarray, background_w: np.ndarray) -> np.ndarray:
        injection = np.asarray(background_w, dtype=float).copy()
        np.add.at(injection, self.site_node, site_export_w)
        return injection

    def solve(self, site_export_w: np.ndarray, background_w: np.ndarray) -> Solution:
        t0 = time.perf_counter()
        injection = self.injections_w(site_export_w, background_w)
        try:
            flows, volts = self._solve_ac(injection)
        except self._pp.powerflow.LoadflowNotConverged:
            self.diverged += 1
            if self.diverged == 1:
                log.warning("AC power flow did not converge; using the linear model for such steps")
            self._linear = self._linear or LinearGrid(self.network, [])
            solved = self._linear.solve(np.zeros(0), injection)
            flows, volts = solved.reverse_flow_w, solved.voltage_pu
        value, excess = self._check.evaluate(flows, volts)
        self.solves += 1
        self.solve_s += time.perf_counter() - t0
        return Solution(flows, volts, value, excess)

    def _solve_ac(self, injection_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(reverse flow W-equivalent per branch, voltage pu per node), zones deepest first."""
        network, topo = self.network, self.network.topology
        p_pu = injection_w / BASE_VA
        q_pu = p_pu * self._tan_phi
        flows = np.zeros(len(network.branches))
        volts = np.full(self.n_nodes, np.nan)
        drawn_by_slack: dict[int, complex] = {}  # regulated node -> per-unit power its zone draws
        for zone in self._zones:
            volts[zone.slack] = zone.setpoint_pu
            if zone.net is None:
                for b in zone.children:  # a source feeding regulators directly: one branch, closed form
                    to = topo.node_index[network.branches[b].to_node]
                    flows[b] = self._single_branch(zone.setpoint_pu, self._z_pu[b], drawn_by_slack[to])
                continue
            assert zone.bus_nodes is not None
            net, nodes, own = zone.net, zone.bus_nodes, zone.n_own
            p, q = p_pu[nodes], q_pu[nodes]
            for i in range(own, len(nodes)):  # a mirror: what the zone below draws, as a negative injection
                p[i], q[i] = -drawn_by_slack[nodes[i]].real, -drawn_by_slack[nodes[i]].imag
            net.sgen["p_mw"] = p * BASE_VA / 1e6
            net.sgen["q_mvar"] = q * BASE_VA / 1e6
            self._pp.runpp(
                net,
                init="results" if net.converged else "flat",
                numba=False,
                check_connectivity=False,
                calculate_voltage_angles=True,
                max_iteration=30,
            )
            res = net.res_impedance
            # power flowing into the branch at each end; towards the source is into its to-end
            p_from, q_from = res["p_from_mw"].to_numpy(), res["q_from_mvar"].to_numpy()
            p_to, q_to = res["p_to_mw"].to_numpy(), res["q_to_mvar"].to_numpy()
            s_max = np.maximum(np.hypot(p_from, q_from), np.hypot(p_to, q_to)) * 1e6
            flows[zone.branches] = np.sign(p_to - p_from) * s_max * network.power_factor
            volts[nodes[1:own]] = net.res_bus["vm_pu"].to_numpy()[1:own]
            grid = net.res_ext_grid  # what the zone draws through its source (the regulator above it)
            drawn_by_slack[zone.slack] = complex(
                float(grid["p_mw"].iloc[0]), float(grid["q_mvar"].iloc[0])
            ) * (1e6 / BASE_VA)
        return flows, volts

    def _single_branch(self, v_source_pu: float, z_pu: complex, drawn_pu: complex) -> float:
        """Reverse flow through one branch from a fixed-voltage source to a bus drawing `drawn_pu`.

        With the far end drawing S = P + jQ: |V|^4 + (2(RP + XQ) - Vs^2)|V|^2 + |Z|^2|S|^2 = 0, the
        current is |S|/|V| and the source sends S + Z|I|^2.
        """
        r, x = max(z_pu.real, MIN_Z_PU), max(z_pu.imag, MIN_Z_PU)
        p, q = drawn_pu.real, drawn_pu.imag
        b = v_source_pu**2 - 2.0 * (r * p + x * q)
        disc = b * b - 4.0 * (r * r + x * x) * (p * p + q * q)
        if disc < 0:
            raise self._pp.powerflow.LoadflowNotConverged("beyond the branch's maximum transfer")
        v2 = (b + math.sqrt(disc)) / 2.0
        i2 = (p * p + q * q) / v2
        sent = complex(p + r * i2, q + x * i2)
        s_max = max(abs(sent), abs(drawn_pu)) * BASE_VA
        direction = float(np.sign(-p - sent.real))  # into the branch at its to-end minus at its from-end
        return direction * s_max * self.network.power_factor


def solve_seconds(grid: Any) -> dict[str, float | int]:
    """What a run's AC solves cost: the report shows it, as it bounds the clock factor AC can keep up with.

    Any grid counting `solves`, `solve_s` and `diverged` (AcGrid, sim.pandapower_net.GivenNetGrid).
    """
    if getattr(grid, "solves", 0) == 0:
        return {}
    return {
        "solves": grid.solves,
        "mean_ms": round(1000.0 * grid.solve_s / grid.solves, 2),
        "not_converged": grid.diverged,
    }


__all__ = ["AcGrid", "AcUnavailable", "Constraint", "solve_seconds"]
