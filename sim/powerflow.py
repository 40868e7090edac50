"""The network solved every step from what the fleet actually did, with the engine's own linear model.

Using the same LinDistFlow sensitivities as the envelope engine (`envelopes/sensitivity.py`) means a
violation here is a real disagreement between the envelopes and the behaviour, not a difference
between two models. Customers who are not sites (a node's `load_kw`/`pv_kw`) follow the engine's
own forecast interval by interval, so the fleet is the only thing that moves unexpectedly; an
optional noise share makes them wander to test the margins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from gridshare.envelopes.forecast import ProfileSpec, profile_forecast
from gridshare.grid.network import Network, Site
from gridshare.grid.sensitivity import flow_sensitivity, regulated_path, voltage_sensitivity_pu_per_w

#: Slack before a flow or voltage counts as a violation (float noise on a constraint at its limit).
THERMAL_TOLERANCE_W = 1.0
VOLTAGE_TOLERANCE_PU = 1e-6


@dataclass(frozen=True)
class Constraint:
    """One limit the solve checks: a branch rating in one direction, or a node voltage bound."""

    name: str  # thermal:<branch>:export, voltage:<node>:max, ...
    kind: str  # thermal | voltage
    asset: str
    direction: str  # export | import
    limit: float  # W (thermal) or pu (voltage)
    row: int  # branch or node index


@dataclass(frozen=True)
class Solution:
    reverse_flow_w: np.ndarray  # (n_branches,) towards the source
    voltage_pu: np.ndarray  # (n_nodes,)
    value: np.ndarray  # (n_constraints,) reverse flow W (thermal) or voltage pu, per constraint
    excess: np.ndarray  # (n_constraints,) > 0 where violated, in W or pu


class ConstraintCheck:
    """Each constraint's value in a solve and how far beyond its limit it is: one rule for every solver.

    Thermal rows read the branch's reverse flow (export: over the export rating; import: forward flow
    over the import rating), voltage rows the node's voltage (above v_max, or below v_min); excess
    within the tolerance counts as none.
    """

    def __init__(self, constraints: Sequence[Constraint]) -> None:
        self.constraints = tuple(constraints)
        self._is_thermal = np.array([c.kind == "thermal" for c in self.constraints], dtype=bool)
        self._sign = np.array([1.0 if c.direction == "export" else -1.0 for c in self.constraints])
        self._row = np.array([c.row for c in self.constraints], dtype=int)
        self._limit = np.array([c.limit for c in self.constraints])
        self._tolerance = np.where(self._is_thermal, THERMAL_TOLERANCE_W, VOLTAGE_TOLERANCE_PU)

    def evaluate(self, flows: np.ndarray, volts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(value, excess) per constraint from per-branch (or element) flows and per-node voltages."""
        value = np.empty(len(self.constraints))
        value[self._is_thermal] = flows[self._row[self._is_thermal]]
        value[~self._is_thermal] = volts[self._row[~self._is_thermal]]
        excess = np.where(
            self._is_thermal, self._sign * value - self._limit, self._sign * (value - self._limit)
        )
        return value, np.where(excess > self._tolerance, excess, 0.0)


class LinearGrid:
    """Flows, voltages and constraint excess for a vector of site net exports."""

    def __init__(self, network: Network, sites: Sequence[Site]) -> None:
        self.network = network
        topo = network.topology
        self.site_node = np.array([topo.node_index[s.node] for s in sites], dtype=int)
        self.n_nodes = len(network.nodes)
        self._flow = flow_sensitivity(network)  # (n_branches, n_nodes)
        self._volt = voltage_sensitivity_pu_per_w(network)  # (n_nodes, n_nodes)
        _, self._setpoint = regulated_path(network)
        self._check = ConstraintCheck(constraint_list(network))
        self.constraints = self._check.constraints

    def injections_w(self, site_export_w: np.ndarray, background_w: np.ndarray) -> np.ndarray:
        injection = background_w.copy()
        np.add.at(injection, self.site_node, site_export_w)
        return injection

    def solve(self, site_export_w: np.ndarray, background_w: np.ndarray) -> Solution:
        injection = self.injections_w(site_export_w, background_w)
        flows = self._flow @ injection
        volts = self._setpoint + self._volt @ injection
        value, excess = self._check.evaluate(flows, volts)
        return Solution(flows, volts, value, excess)


def constraint_list(network: Network) -> list[Constraint]:
    """Every rated branch in each rated direction and every bounded node the engine constrains."""
    topo = network.topology
    regulated = {topo.node_index[b.to_node] for b in network.branches if b.regulate_pu is not None}
    out: list[Constraint] = []
    for b, br in enumerate(network.branches):
        if br.rating is None:
            continue
        if br.rating.export_w is not None:
            out.append(
                Constraint(f"thermal:{br.name}:export", "thermal", br.name, "export", br.rating.export_w, b)
            )
        if br.rating.import_w is not None:
            out.append(
                Constraint(f"thermal:{br.name}:import", "thermal", br.name, "import", br.rating.import_w, b)
            )
    for n, node in enumerate(network.nodes):
        if n == topo.root or n in regulated:
            continue
        if node.v_max_pu is not None:
            out.append(
                Constraint(f"voltage:{node.name}:max", "voltage", node.name, "export", node.v_max_pu, n)
            )
        if node.v_min_pu is not None:
            out.append(
                Constraint(f"voltage:{node.name}:min", "voltage", node.name, "import", node.v_min_pu, n)
            )
    return out


class Background:
    """Net injection per node of customers who are not sites, as the engine forecasts them per interval."""

    def __init__(
        self,
        network: Network,
        start_s: int,
        end_s: int,
        interval_s: int,
        noise_share: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        first = start_s - start_s % interval_s
        n = (end_s - first) // interval_s + 2
        specs = {n_.name: ProfileSpec(n_.pv_w, n_.load_w, n_.load_profile) for n_ in network.nodes}
        fc = profile_forecast(
            specs,
            datetime.fromtimestamp(first, UTC),
            interval_s,
            int(n),
            tz=network.timezone,
            latitude_deg=network.latitude_deg,
            longitude_deg=network.longitude_deg,
            issued_at=datetime.fromtimestamp(first, UTC),  # shapes only: its age is never read
        )
        self._first_s = first
        self._interval_s = interval_s
        net = fc.generation_w - fc.load_w  # (n_intervals, n_nodes)
        if noise_share > 0:
            rng = rng or np.random.default_rng(0)
            scale = fc.generation_w + fc.load_w
            net = net + rng.normal(0.0, noise_share, net.shape) * scale
        self._net_w = net

    def at(self, t_s: float) -> np.ndarray:
        row = int((t_s - self._first_s) // self._interval_s)
        return self._net_w[min(max(row, 0), len(self._net_w) - 1)]
