"""Build the allocation problem for one direction: who shares which capacity, and how much is left.

Export allocates reverse-flow capacity and voltage rise (V_max - V_forecast); import allocates
forward-flow capacity and voltage drop (V_forecast - V_min). The forecast is taken with every
uncontrolled flow at its forecast and every non-flexible site at its agreed limit, so fixed
connections take their share first and flexible sites divide what remains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gridshare.allocation.problem import AllocationProblem, AllocationResult
from gridshare.grid.network import Network
from gridshare.grid.sensitivity import flow_sensitivity, node_voltages_pu, voltage_sensitivity_pu_per_w

Direction = Literal["export", "import"]
DIRECTIONS: tuple[Direction, Direction] = ("export", "import")


@dataclass(frozen=True)
class FlexibleSites:
    """The dynamic sites of one direction, as arrays the allocation rules consume."""

    site_ids: tuple[str, ...]
    node_index: np.ndarray  # (n_sites,) node each site connects at
    floor_w: np.ndarray  # (n_intervals, n_sites)
    cap_w: np.ndarray  # (n_intervals, n_sites)
    weight: np.ndarray  # (n_sites,)
    queue_position: np.ndarray  # (n_sites,)
    max_step_w: np.ndarray | None = None


@dataclass(frozen=True)
class DirectionProblem:
    """An AllocationProblem plus what is needed to report each constraint in its own units."""

    direction: Direction
    problem: AllocationProblem
    kinds: tuple[str, ...]  # "thermal" (W) or "voltage" (pu), per constraint
    assets: tuple[str, ...]  # branch or node name, per constraint
    limit: np.ndarray  # (n_constraints,) rating in W, or the voltage bound in pu
    forecast: np.ndarray  # (n_intervals, n_constraints) flow in W, or voltage in pu, before flexible sites

    def value(self, result: AllocationResult) -> np.ndarray:
        """Flow (W) or voltage (pu) with every flexible site at its allocated limit."""
        # Importing lowers voltages; every other row grows with the allocated watts.
        signs = np.array([-1.0 if k == "voltage" and self.direction == "import" else 1.0 for k in self.kinds])
        return self.forecast + signs * result.loading


def build_direction_problem(
    network: Network,
    direction: Direction,
    flexible: FlexibleSites,
    fixed_injection_w: np.ndarray,
) -> DirectionProblem:
    """Rows for every rated branch and every bounded non-root node, for one direction.

    `fixed_injection_w` (n_intervals, n_nodes) is the net export of everything that is not
    flexible: uncontrolled load/PV at forecast and fixed sites at their agreed limit in this
    direction. Constraints nothing flexible can affect are kept (zero rows), so an asset that
    uncontrolled flows alone overload still shows up as an infeasibility.
    """
    topo = network.topology
    flows_w = fixed_injection_w @ flow_sensitivity(network).T  # reverse flow per branch
    volt_sens = voltage_sensitivity_pu_per_w(network)
    voltages_pu = node_voltages_pu(network, fixed_injection_w)
    site_nodes = flexible.node_index
    regulated = {topo.node_index[br.to_node] for br in network.branches if br.regulate_pu is not None}

    names: list[str] = []
    kinds: list[str] = []
    assets: list[str] = []
    limits: list[float] = []
    rows: list[np.ndarray] = []
    forecasts: list[np.ndarray] = []
    headrooms: list[np.ndarray] = []
    tranches: list[float] = []

    for b, br in enumerate(network.branches):
        rating_w = None if br.rating is None else getattr(br.rating, f"{direction}_w")
        if rating_w is None:
            continue
        flow = flows_w[:, b] if direction == "export" else -flows_w[:, b]
        names.append(f"thermal:{br.name}")
        kinds.append("thermal")
        assets.append(br.name)
        limits.append(rating_w)
        rows.append(topo.on_path[b, site_nodes].astype(float))
        forecasts.append(flow)
        headrooms.append(rating_w - flow)
        tranche_w = getattr(br, f"tranche_{direction}_w")
        tranches.append(np.inf if tranche_w is None else tranche_w)

    for n, node in enumerate(network.nodes):
        bound = node.v_max_pu if direction == "export" else node.v_min_pu
        if n == topo.root or bound is None or n in regulated:
            continue  # a regulated bus sits at its setpoint whatever flows
        v = voltages_pu[:, n]
        names.append(f"voltage:{node.name}")
        kinds.append("voltage")
        assets.append(node.name)
        limits.append(bound)
        rows.append(volt_sens[n, site_nodes])
        forecasts.append(v)
        headrooms.append(bound - v if direction == "export" else v - bound)
        tranches.append(np.inf)

    n_int, n_sites = flexible.floor_w.shape
    sensitivity = np.vstack(rows) if rows else np.zeros((0, n_sites))
    headroom = np.column_stack(headrooms) if headrooms else np.zeros((n_int, 0))
    forecast = np.column_stack(forecasts) if forecasts else np.zeros((n_int, 0))
    tranche = np.asarray(tranches, dtype=float)
    problem = AllocationProblem(
        site_ids=flexible.site_ids,
        constraint_names=tuple(names),
        sensitivity=sensitivity,
        headroom=headroom,
        floor_w=flexible.floor_w,
        cap_w=flexible.cap_w,
        weight=flexible.weight,
        queue_position=flexible.queue_position,
        max_step_w=flexible.max_step_w,
        tranche_size_w=tranche if np.isfinite(tranche).any() else None,
    )
    return DirectionProblem(
        direction=direction,
        problem=problem,
        kinds=tuple(kinds),
        assets=tuple(assets),
        limit=np.asarray(limits, dtype=float),
        forecast=forecast,
    )


def dense_queue(positions: Sequence[int | None]) -> np.ndarray:
    """Connection order 0..n-1 from file queue positions; unset ones queue last, in file order."""
    keyed = sorted(range(len(positions)), key=lambda i: (positions[i] is None, positions[i] or 0, i))
    order = np.empty(len(positions), dtype=int)
    for rank, i in enumerate(keyed):
        order[i] = rank
    return order
