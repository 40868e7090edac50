"""Linearised (LinDistFlow) sensitivities of branch flows and node voltages to injections.

On a radial feeder the flow through a branch is the sum of injections downstream of it, so
thermal rows are 0/1. Dropping losses from the DistFlow equations and taking V ~= 1 pu gives
dV_k/dP_j = sum over branches common to the paths root->k and root->j of R_b / V_base,b^2,
and likewise X_b for reactive power. A site running at the assumed power factor moves
Q = P tan(phi) with P (absorbing vars while importing, exporting vars while exporting), which
is the conservative choice in both directions, so each watt counts (R + X tan phi) / V^2.
"""

from __future__ import annotations

import math

import numpy as np

from gridshare.grid.network import Network
from gridshare.grid.units import V_PER_KV


def branch_voltage_coefficient_pu_per_w(network: Network) -> np.ndarray:
    """Per-unit voltage change across each branch per watt flowing through it, (n_branches,)."""
    tan_phi = math.tan(math.acos(network.power_factor))
    out = np.empty(len(network.branches))
    for b, br in enumerate(network.branches):
        v_base_v = br.base_kv * V_PER_KV
        out[b] = (br.r_ohm + br.x_ohm * tan_phi) / (v_base_v * v_base_v)
    return out


def regulated_path(network: Network) -> tuple[np.ndarray, np.ndarray]:
    """Which branches move each node's voltage, and the setpoint each node's voltage starts from.

    A branch with `regulate_pu` (an on-load tap changer or line regulator) holds its downstream
    node at the setpoint, so only branches below the nearest regulator on a node's path count.
    Returns (moves (n_branches, n_nodes) bool, setpoint_pu (n_nodes,)).
    """
    topo = network.topology
    moves = topo.on_path.copy()
    setpoint = np.full(len(network.nodes), network.source_voltage_pu)
    for b, br in enumerate(network.branches):
        if br.regulate_pu is None:
            continue
        below = topo.on_path[b]  # nodes downstream of (and including) the regulated node
        upstream_or_self = topo.on_path[:, topo.node_index[br.to_node]]  # branches root..b
        # For nodes below b, branches from the root down to b no longer move their voltage.
        moves[np.ix_(upstream_or_self, below)] = False
    for n in range(len(network.nodes)):
        anchor = _nearest_regulator(network, n)
        if anchor is not None:
            setpoint[n] = network.branches[anchor].regulate_pu
    return moves, setpoint


def _nearest_regulator(network: Network, node: int) -> int | None:
    topo = network.topology
    while topo.parent_branch[node] >= 0:
        b = int(topo.parent_branch[node])
        if network.branches[b].regulate_pu is not None:
            return b
        node = topo.node_index[network.branches[b].from_node]
    return None


def voltage_sensitivity_pu_per_w(network: Network) -> np.ndarray:
    """dV_k/dP_j in per-unit per watt of injection at node j, (n_nodes, n_nodes), >= 0.

    Without regulators this is the symmetric common-path sum; a regulator cuts the branches
    above it out of the sums for the nodes it regulates.
    """
    on_path = network.topology.on_path.astype(float)  # (n_branches, n_nodes)
    moves, _ = regulated_path(network)
    coeff = branch_voltage_coefficient_pu_per_w(network)
    return (moves * coeff[:, None]).T @ on_path


def flow_sensitivity(network: Network) -> np.ndarray:
    """Reverse flow through branch b per watt injected at node n, (n_branches, n_nodes), 0 or 1."""
    return network.topology.on_path.astype(float)


def node_voltages_pu(network: Network, injection_w: np.ndarray) -> np.ndarray:
    """Linearised voltages for net injections (export positive), (n_intervals, n_nodes)."""
    _, setpoint = regulated_path(network)
    return setpoint + injection_w @ voltage_sensitivity_pu_per_w(network).T
