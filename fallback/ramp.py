"""A ramp rate (DefaultDERControl setGradW) from the rapid-voltage-change limits.

Why a ramp at all: when the server stops, every published envelope ends at the same instant, so
every dynamic site steps to its default at once. Dominion Energy's DER interconnection parameters
(2024, section 2.2.2, after IEEE 1547-2018) bound the voltage change DER may cause: 3 % of nominal
per second at medium voltage (1 kV to 35 kV) and 5 % at low voltage (1 kV and below).

If every site j ramps at r_j (a fraction of its rated power P_j per second, which is what setGradW
expresses, in hundredths of a percent per second) in the same direction, node k's voltage moves by
sum_j S[k, j] r_j P_j pu per second, with S the LinDistFlow sensitivity. Requiring that to stay
within node k's limit L_k for every k is the engine's allocation problem again, with W/s in place
of W: one row per node, each site capped at 100 %/s, shared pro-rata by rating.

Tap changers and regulators act over tens of seconds, far slower than a ramp, so for this purpose
they do not hold their node: S is the unregulated sensitivity (every branch from the source counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gridshare.allocation.problem import AllocationProblem
from gridshare.allocation.rules import allocate
from gridshare.grid.network import Network, Site
from gridshare.grid.sensitivity import branch_voltage_coefficient_pu_per_w

#: Dominion 2.2.2 / IEEE 1547-2018 rapid voltage change limits, per unit of nominal per second.
RVC_MV_PU_PER_S = 0.03
RVC_LV_PU_PER_S = 0.05
#: IEEE C62.41.2 (as Dominion cites it): low voltage is 1000 V and less.
LV_MAX_KV = 1.0
#: setGradW is a UInt16 in hundredths of a percent per second; 0 would mean "no limit", so never 0.
MIN_GRAD_HUNDREDTHS = 1
#: Cap at 100 %/s: full output within a second is as fast as a default ever needs to move.
MAX_GRAD_HUNDREDTHS = 10_000


def site_rating_w(site: Site, rated_w: Mapping[str, float] | None = None) -> float:
    """P_j: the larger of the site's agreed maxima and any rating its devices reported (W).

    A device's own rating (DERCapability rtgMaxW, DERSettings setMaxW) may exceed what its connection
    agreement lets it export or import; a ramp in percent of the rating, and a gross limit meant not
    to bind, must count the larger of the two.
    """
    return max(site.max_export_w, site.max_import_w, float((rated_w or {}).get(site.id, 0.0)))


@dataclass(frozen=True)
class RampLimits:
    """Rapid-voltage-change limits (pu of nominal per second) by voltage level."""

    mv_pu_per_s: float = RVC_MV_PU_PER_S
    lv_pu_per_s: float = RVC_LV_PU_PER_S
    lv_max_kv: float = LV_MAX_KV


@dataclass(frozen=True)
class RampResult:
    set_grad_w_hundredths: np.ndarray  # (n_sites,) int
    set_by_node: tuple[str | None, ...]  # node whose voltage limit sets each site's rate (None: the cap)
    node_rate_pu_per_s: np.ndarray  # (n_nodes,) voltage change per second with every site at its rate


def unregulated_voltage_sensitivity_pu_per_w(network: Network) -> np.ndarray:
    """dV_k/dP_j (n_nodes, n_nodes) counting every branch from the source, regulators ignored."""
    on_path = network.topology.on_path.astype(float)
    coeff = branch_voltage_coefficient_pu_per_w(network)
    return (on_path * coeff[:, None]).T @ on_path


def node_limit_pu_per_s(network: Network, limits: RampLimits) -> np.ndarray:
    """Each node's RVC limit from the voltage of the branch feeding it; the source bus gets +inf."""
    topo = network.topology
    out = np.full(len(network.nodes), np.inf)
    for n in range(len(network.nodes)):
        b = int(topo.parent_branch[n])
        if b >= 0:
            kv = network.branches[b].base_kv
            out[n] = limits.lv_pu_per_s if kv <= limits.lv_max_kv else limits.mv_pu_per_s
    return out


def ramp_rates(
    network: Network,
    site_nodes: np.ndarray,
    rated_w: np.ndarray,
    limits: RampLimits = RampLimits(),
    site_ids: tuple[str, ...] | None = None,
) -> RampResult:
    """setGradW per site (hundredths of %/s of its rating) so simultaneous ramps respect every RVC limit.

    The rates are shared pro-rata by rating with the engine's allocation rule (one row per node, in
    pu/s; each site's "limit" is its ramp in W/s, capped at 100 %/s of its rating), so a site that
    barely moves a congested node is not held to that node's rate.
    """
    n_sites = len(site_nodes)
    if n_sites == 0:
        return RampResult(np.zeros(0, dtype=int), (), np.zeros(len(network.nodes)))
    rated = np.maximum(np.asarray(rated_w, dtype=float), 0.0)
    sens = unregulated_voltage_sensitivity_pu_per_w(network)[:, site_nodes]  # (n_nodes, n_sites)
    limit = node_limit_pu_per_s(network, limits)
    rows = np.flatnonzero(np.isfinite(limit) & (sens > 0).any(axis=1))
    cap = rated * (MAX_GRAD_HUNDREDTHS / 1e4)
    problem = AllocationProblem(
        site_ids=site_ids or tuple(str(j) for j in range(n_sites)),
        constraint_names=tuple(network.nodes[int(k)].name for k in rows),
        sensitivity=sens[rows],
        headroom=limit[rows][None, :],
        floor_w=np.zeros((1, n_sites)),
        cap_w=cap[None, :],
        weight=np.maximum(rated, 1.0),
        queue_position=np.arange(n_sites),
    )
    w_per_s = allocate(problem, "pro-rata").limit_w[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(rated > 0, w_per_s / rated, MAX_GRAD_HUNDREDTHS / 1e4)
    grad = np.clip(np.floor(rate * 1e4), MIN_GRAD_HUNDREDTHS, MAX_GRAD_HUNDREDTHS).astype(int)
    achieved = sens @ (grad / 1e4 * rated)
    set_by: list[str | None] = []
    for j in range(n_sites):
        moved = rows[sens[rows, j] > 0]
        if grad[j] >= MAX_GRAD_HUNDREDTHS or moved.size == 0:
            set_by.append(None)
            continue
        own_slack = (limit[moved] - achieved[moved]) / sens[moved, j]
        set_by.append(network.nodes[int(moved[np.argmin(own_slack)])].name)
    return RampResult(grad, tuple(set_by), achieved)
