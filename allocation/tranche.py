"""Pro-rata tranches: a pre-studied amount of agreed capacity shares pro-rata, later ones LIFO.

The Ameren report sizes a tranche as the DER a location can host within a target annual
curtailment (e.g. 5 %, studied at 2.5 % for margin). Here, per constraint, participants in
connection order are in its tranche while their cumulative weight (agreed capacity) fits in
tranche_size_w; a site outside the tranche of any constraint it loads is a later connector.
Tranche members share pro-rata with later connectors held at their floors; later connectors
are then served LIFO from what is left, so they can never take capacity from the tranche.
"""

from __future__ import annotations

import numpy as np

from gridshare.allocation.driver import Core, solve
from gridshare.allocation.lifo import lifo_limits
from gridshare.allocation.network import Network
from gridshare.allocation.problem import AllocationProblem, AllocationResult
from gridshare.allocation.prorata import prorata_limits


def later_connectors(net: Network, tranche_size_w: np.ndarray | None) -> np.ndarray:
    """(n_sites,) bool: outside the tranche of at least one constraint the site loads."""
    n_sites = net.weight.shape[0]
    ent = net.entries
    if tranche_size_w is None or ent.n_entries == 0:
        return np.zeros(n_sites, dtype=bool)
    weight_e = net.weight[ent.site]  # entries are in queue order within each constraint
    running = np.cumsum(weight_e)
    before = np.zeros(ent.starts.shape[0])
    before[1:] = running[ent.starts[1:] - 1]
    running -= before[ent.group]
    size = np.asarray(tranche_size_w, dtype=np.float64)[ent.row]
    outside = running > size * (1 + 1e-12)
    later = np.zeros(n_sites, dtype=bool)
    later[ent.site[outside]] = True
    return later


def tranche_limits(
    net: Network,
    later: np.ndarray,
    headroom: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    networks: tuple[Network, Network] | None = None,
) -> np.ndarray:
    """Pro-rata among tranche members, then LIFO for later connectors from what remains.

    `networks` may carry the two restricted views (members, later) precomputed by the caller.
    """
    if not later.any():
        return prorata_limits(net, headroom, lo, hi)
    tranche_net, later_net = networks or (net.restricted(~later), net.restricted(later))
    members = prorata_limits(tranche_net, headroom, lo, np.where(later, lo, hi))
    return lifo_limits(later_net, headroom, np.where(later, lo, members), np.where(later, hi, members))


def allocate_tranche(problem: AllocationProblem, *, use_tree: bool = True) -> AllocationResult:
    """Pro-rata tranches; with tranche_size_w None everyone is in the tranche (pure pro-rata)."""

    def make_core(net: Network) -> Core:
        later = later_connectors(net, problem.tranche_size_w)
        views = (net.restricted(~later), net.restricted(later))
        return lambda h, lo, hi: tranche_limits(net, later, h, lo, hi, networks=views)

    return solve(problem, make_core, use_tree=use_tree)
