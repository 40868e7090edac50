"""The contract between the envelope builder and the allocation rules.

`envelopes/` turns a network, forecasts and agreements into an `AllocationProblem`
for one direction (export or import) over a horizon; `allocation/` shares the headroom.
Everything is a numpy array so the rules stay pure and vectorised; no HTTP, no SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AllocationProblem:
    """Linear constraints `sensitivity @ limit_w[t] <= headroom[t]` for every interval t.

    Sensitivities are non-negative: a watt more from a flexible site never relieves a
    constraint in the direction being allocated (radial network, one direction at a time).
    Thermal rows are 1.0 for every site downstream of the asset (headroom in W); voltage rows
    carry dV/dP in per-unit per watt (headroom in per-unit).
    """

    site_ids: tuple[str, ...]
    constraint_names: tuple[str, ...]
    sensitivity: np.ndarray  # (n_constraints, n_sites), >= 0
    headroom: np.ndarray  # (n_intervals, n_constraints): capacity left after firm + uncontrolled flows
    floor_w: np.ndarray  # (n_intervals, n_sites): guaranteed minimum (static floor), >= 0
    cap_w: np.ndarray  # (n_intervals, n_sites): agreed maximum, >= floor_w
    weight: np.ndarray  # (n_sites,) pro-rata weights, > 0 (agreed capacity by default)
    queue_position: np.ndarray  # (n_sites,) connection order, 0 = first to connect
    max_step_w: np.ndarray | None = None  # (n_sites,) largest change between consecutive intervals
    tranche_size_w: np.ndarray | None = None  # (n_constraints,) agreed capacity admitted pro-rata
    initial_w: np.ndarray | None = None  # (n_sites,) limits in force before interval 0 (for ramping)

    @property
    def n_intervals(self) -> int:
        return int(self.headroom.shape[0])

    @property
    def n_sites(self) -> int:
        return len(self.site_ids)

    @property
    def n_constraints(self) -> int:
        return len(self.constraint_names)


@dataclass(frozen=True)
class Infeasibility:
    """Floors (or ramp limits) alone overload a constraint: reported, never hidden."""

    interval: int
    constraint: str
    excess: float  # in the constraint's unit (W for thermal, per-unit for voltage)


@dataclass
class AllocationResult:
    limit_w: np.ndarray  # (n_intervals, n_sites)
    loading: np.ndarray  # (n_intervals, n_constraints): sensitivity @ limit_w[t]
    binding: np.ndarray  # (n_intervals, n_constraints) bool: loading within tolerance of headroom
    infeasible: list[Infeasibility] = field(default_factory=list)
