"""Everything that happened in a run, step by step, as arrays the figures and plots are computed from.

Preallocated (n_steps x n_sites and n_steps x n_constraints, float32), so recording a step is a few
row assignments and a day of 1,000 sites at one-minute steps stays around 100 MB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gridshare.sim.powerflow import Constraint


@dataclass
class Recording:
    times_s: np.ndarray
    step_s: int
    site_ids: tuple[str, ...]
    constraints: tuple[Constraint, ...]
    net_export_w: np.ndarray = field(init=False)  # what the site did
    compliant_export_w: np.ndarray = field(init=False)  # what it would have done had it complied
    export_limit_w: np.ndarray = field(init=False)  # the limit it was applying (inf: none)
    import_limit_w: np.ndarray = field(init=False)
    pv_available_w: np.ndarray = field(init=False)
    pv_w: np.ndarray = field(init=False)
    pv_allowed_w: np.ndarray = field(init=False)  # what the limits alone let PV make (no ramp)
    ev_wanted_w: np.ndarray = field(init=False)
    ev_w: np.ndarray = field(init=False)
    fallback: np.ndarray = field(init=False)  # bool
    value: np.ndarray = field(init=False)  # flow W (reverse positive) or voltage pu, per constraint
    excess: np.ndarray = field(init=False)  # > 0 where violated (W or pu), actual behaviour
    excess_compliant: np.ndarray = field(init=False)  # > 0 where violated with every site compliant
    lag_s: np.ndarray = field(init=False)  # simulated seconds the step was computed late
    #: with AC power flow: the linear model's excess for the same behaviour (value/excess are AC's)
    excess_linear: np.ndarray | None = field(init=False, default=None)
    steps_done: int = 0

    def __post_init__(self) -> None:
        n, s, c = len(self.times_s), len(self.site_ids), len(self.constraints)
        for name in (
            "net_export_w",
            "compliant_export_w",
            "export_limit_w",
            "import_limit_w",
            "pv_available_w",
            "pv_w",
            "pv_allowed_w",
            "ev_wanted_w",
            "ev_w",
        ):
            setattr(self, name, np.zeros((n, s), dtype=np.float32))
        self.fallback = np.zeros((n, s), dtype=bool)
        self.value = np.zeros((n, c), dtype=np.float64)
        self.excess = np.zeros((n, c), dtype=np.float32)
        self.excess_compliant = np.zeros((n, c), dtype=np.float32)
        self.lag_s = np.zeros(n, dtype=np.float32)
