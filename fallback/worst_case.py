"""The stated worst case fallback limits must survive, with every forecast ignored.

A device falls back to its DefaultDERControl exactly when the server has lost track of it, so the
fallback cannot lean on any forecast or measurement. Per direction we therefore assume the most
adverse state the planning data allow, all at once:

* export: uncontrolled customers' load at its minimum: the lowest point of the node's load profile
  (the planning model's light load; residential 31 %, commercial 30 % of peak) unless
  `export_load_fraction` fixes a fraction of the peak (0 = no load at all), and their PV at
  `export_pv_fraction` of its clear-sky peak (default 1, the profile's maximum);
* import: uncontrolled load at `import_load_fraction` of its peak (default 1) and PV at
  `import_pv_fraction` (default 0: night);
* every non-dynamic site (firm, limited, scheduled, staggered) at the highest limit its agreement
  allows at any month-hour, on either side of a staggered switch (export problem: exporting; import
  problem: importing);
* every dynamic site at its fallback limit in the same direction, simultaneously.

Mixed states (some sites exporting while others import) are never worse for any constraint: on a
radial network every sensitivity is non-negative, so an importing site only relieves export rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridshare.envelopes.forecast import LOAD_SHAPES
from gridshare.envelopes.headroom import Direction
from gridshare.grid.agreements import HOURS, MONTHS, IntervalTimes
from gridshare.grid.network import Network, Site


@dataclass(frozen=True)
class WorstCase:
    """Fractions of each uncontrolled node's peak load and clear-sky PV in each direction's worst case."""

    export_load_fraction: float | None = None  # None: the minimum of the node's load profile
    export_pv_fraction: float = 1.0
    import_load_fraction: float = 1.0
    import_pv_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "export_load_fraction",
            "export_pv_fraction",
            "import_load_fraction",
            "import_pv_fraction",
        ):
            value = getattr(self, name)
            if value is not None and not (0.0 <= value <= 10.0):
                raise ValueError(f"{name} must be a non-negative fraction of the peak, got {value}")

    def export_load(self, profile: str) -> float:
        """Fraction of peak load assumed while exporting: fixed, or the profile's lowest point."""
        if self.export_load_fraction is not None:
            return self.export_load_fraction
        return min(LOAD_SHAPES[profile])

    def describe(self) -> str:
        """One line for logs and the operator API."""
        load = "profile minimum" if self.export_load_fraction is None else f"x{self.export_load_fraction:g}"
        return (
            f"export: load {load}, PV x{self.export_pv_fraction:g}; "
            f"import: load x{self.import_load_fraction:g}, PV x{self.import_pv_fraction:g}; "
            "fixed sites at their highest agreed limit, every dynamic site at its fallback limit"
        )


def _every_month_hour_both_sides() -> IntervalTimes:
    """All 288 month-hours, once long before and once long after any staggered switch."""
    month = np.repeat(np.arange(1, MONTHS + 1), HOURS)
    hour = np.tile(np.arange(HOURS), MONTHS)
    epoch = np.repeat(np.array([-(2**62), 2**62], dtype=np.int64), MONTHS * HOURS)
    return IntervalTimes(epoch_s=epoch, month=np.tile(month, 2), hour=np.tile(hour, 2))


_ALL_TIMES = _every_month_hour_both_sides()


def peak_agreed_w(site: Site) -> tuple[float, float]:
    """Highest export and import (W) the site's agreement ever allows, capped by its agreed maxima.

    Uses the agreement's own `limits_w`, so a new agreement kind needs no change here.
    """
    export_w, import_w = site.agreement.limits_w(_ALL_TIMES, site.max_export_w, site.max_import_w)
    return float(np.max(export_w)), float(np.max(import_w))


def background_injection_w(
    network: Network, sites: Sequence[Site], direction: Direction, worst: WorstCase
) -> np.ndarray:
    """Net export per node (1, n_nodes) of everything that is not dynamic, in the direction's worst case."""
    index = network.topology.node_index
    out = np.zeros((1, len(network.nodes)))
    pv_f = worst.export_pv_fraction if direction == "export" else worst.import_pv_fraction
    for n, node in enumerate(network.nodes):
        load_f = worst.export_load(node.load_profile) if direction == "export" else worst.import_load_fraction
        out[0, n] = node.pv_w * pv_f - node.load_w * load_f
    for site in sites:
        if site.agreement.flexible:
            continue
        export_w, import_w = peak_agreed_w(site)
        out[0, index[site.node]] += export_w if direction == "export" else -import_w
    return out
