"""One rule over a year (or any span) on the engine itself: envelopes, then what each site loses.

The live engine's `compute_envelopes` runs month by month over the study grid (so a 15-minute
year of a 100-site grid stays within a few hundred MB), with every site's and node's profile as
its forecast: the envelopes are those a perfect forecast would have issued. A site then produces
what it can within its envelope, as the simulated fleet's gateway does (sim/site.py): its
generation serves its own load first, and the export above the limit is curtailed:

    curtailed = clip(generation - load - export_limit, 0, generation)

For loads, what the import limit refuses is counted the same way (`import_curtailed_w`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from gridshare.core.settings import Settings
from gridshare.envelopes.compute import compute_envelopes
from gridshare.envelopes.forecast import Forecast
from gridshare.fallback import FallbackError, compute_fallback
from gridshare.grid.localtime import local_month_hour
from gridshare.grid.network import Network, Site
from gridshare.grid.sensitivity import voltage_sensitivity_pu_per_w

Behaviour = str  # "as-issued" | "forecast-aware"
BEHAVIOURS: tuple[Behaviour, ...] = ("as-issued", "forecast-aware")
#: Intervals per engine call: a month of 15-minute intervals. Results do not depend on it.
CHUNK_INTERVALS = 2976
#: Below this share of a site's size a curtailment is rounding, not an event.
EVENT_SHARE = 1e-4

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class StudyGrid:
    """Everything every run of a study shares: network, sites, the profiles as a forecast, the grid."""

    network: Network
    sites: tuple[Site, ...]
    forecast: Forecast  # ids: every site, then `node:<name>` for every node
    epoch_s: np.ndarray  # (T,) interval starts, UTC
    interval_s: int
    label: str = "year"  # which profile year or draw

    @property
    def n_intervals(self) -> int:
        return len(self.epoch_s)

    def site_series(self) -> tuple[np.ndarray, np.ndarray]:
        """(generation_w, load_w), each (T, n_sites), in site order."""
        index = {name: i for i, name in enumerate(self.forecast.ids)}
        cols = np.array([index[s.id] for s in self.sites], dtype=np.intp)
        return self.forecast.generation_w[:, cols], self.forecast.load_w[:, cols]


@dataclass
class YearRun:
    """The envelopes of one rule and behaviour over the grid, and what each site lost to them."""

    rule: str
    behaviour: Behaviour
    margin_fraction: float | None
    label: str
    site_ids: tuple[str, ...]
    site_nodes: tuple[str, ...]
    size_w: np.ndarray  # (n,) agreed export capacity
    flexible: np.ndarray  # (n,) bool
    epoch_s: np.ndarray  # (T,)
    interval_s: int
    month: np.ndarray  # (T,) local 1..12
    hour: np.ndarray  # (T,) local 0..23
    generation_w: np.ndarray  # (T, n)
    load_w: np.ndarray  # (T, n)
    export_limit_w: np.ndarray  # (T, n)
    import_limit_w: np.ndarray  # (T, n)
    constraint_names: tuple[str, ...]  # export constraints
    binding: np.ndarray  # (T, c) export constraint binds
    site_loads: np.ndarray  # (n, c) flexible site s is limited by constraint c (sensitivity > 0)
    infeasible_intervals: int
    timezone: str = "UTC"
    engine_s: float = 0.0

    @property
    def interval_h(self) -> float:
        return self.interval_s / 3600.0

    @property
    def curtailed_w(self) -> np.ndarray:
        """(T, n) generation the export limit refused (self-consumption first)."""
        return np.clip(self.generation_w - self.load_w - self.export_limit_w, 0.0, self.generation_w)

    @property
    def import_curtailed_w(self) -> np.ndarray:
        """(T, n) load the import limit refused (own generation first)."""
        return np.clip(self.load_w - self.generation_w - self.import_limit_w, 0.0, self.load_w)


def site_constraint_matrix(network: Network, sites: Sequence[Site], names: Sequence[str]) -> np.ndarray:
    """(n_sites, n_constraints) bool: the export constraint loads the site (flow or voltage sensitivity)."""
    topo = network.topology
    nodes = np.array([topo.node_index[s.node] for s in sites], dtype=int)
    branch = {b.name: i for i, b in enumerate(network.branches)}
    volt = voltage_sensitivity_pu_per_w(network)
    out = np.zeros((len(sites), len(names)), dtype=bool)
    for c, name in enumerate(names):
        kind, _, asset = name.partition(":")
        if kind == "thermal" and asset in branch:
            out[:, c] = topo.on_path[branch[asset], nodes]
        elif kind == "voltage" and asset in topo.node_index:
            out[:, c] = volt[topo.node_index[asset], nodes] > 0
    flexible = np.array([s.agreement.flexible for s in sites], dtype=bool)
    out[~flexible] = False
    return out


#: The share of worst-case headroom the service's fallback limits leave unused, by default.
SERVICE_FALLBACK_MARGIN = float(Settings.model_fields["fallback_margin_fraction"].default)


def _fallback_minimum(
    network: Network, sites: Sequence[Site], rule: str, margin_fraction: float
) -> dict[str, tuple[float, float]] | None:
    """Each dynamic site's fallback (export, import); None where the network has none to give."""
    try:
        fallback = compute_fallback(network, sites, policy=rule, margin_fraction=margin_fraction)
    except FallbackError:
        return None  # the service would publish no defaults either: the rule's envelopes stand
    return {k: (v.export_w, v.import_w) for k, v in fallback.limits.items()}


def run_year(
    grid: StudyGrid,
    rule: str,
    behaviour: Behaviour = "as-issued",
    margin_fraction: float = 0.1,
    progress: Progress | None = None,
    fallback_margin_fraction: float = SERVICE_FALLBACK_MARGIN,
) -> YearRun:
    """Envelopes of `rule` over the whole grid and the series the metrics are computed from.

    As the live recomputation does, no envelope goes below the site's fallback limit (computed with
    the service's default `fallback_margin_fraction`; docs/fallback.md, "No envelope below the default"),
    so forecast-aware studies curtail what the service would.
    """
    import time

    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown envelope behaviour {behaviour!r} (choose from {', '.join(BEHAVIOURS)})")
    margin = margin_fraction if behaviour == "forecast-aware" else None
    sites = list(grid.sites)
    n_int, n_sites = grid.n_intervals, len(sites)
    # A ramp limit chains intervals: such a study runs as one piece so no chain is cut.
    ramped = any(s.max_step_w is not None for s in sites)
    chunk = n_int if ramped else CHUNK_INTERVALS
    export = np.empty((n_int, n_sites))
    imports = np.empty((n_int, n_sites))
    binding: np.ndarray | None = None
    names: tuple[str, ...] = ()
    infeasible: set[int] = set()
    t0 = time.perf_counter()
    minimum_w = _fallback_minimum(grid.network, sites, rule, fallback_margin_fraction)
    starts = list(range(0, n_int, chunk))
    for k, first in enumerate(starts):
        n = min(chunk, n_int - first)
        env = compute_envelopes(
            grid.network,
            sites,
            datetime.fromtimestamp(int(grid.epoch_s[first]), UTC),
            n * grid.interval_s,
            grid.interval_s,
            rule,
            forecasts=grid.forecast,
            forecast_margin_fraction=margin,
            minimum_w=minimum_w,
        )
        export[first : first + n] = env.export_limit_w
        imports[first : first + n] = env.import_limit_w
        report = env.constraints["export"]
        if binding is None:
            names = report.names
            binding = np.zeros((n_int, len(names)), dtype=bool)
        binding[first : first + n] = report.binding
        infeasible.update(
            first + int((i.interval_start.timestamp() - grid.epoch_s[first]) // grid.interval_s)
            for i in env.infeasibilities
        )
        if progress is not None:
            progress(k + 1, len(starts))
    gen, load = grid.site_series()
    month, hour = local_month_hour(grid.epoch_s, grid.network.timezone)
    return YearRun(
        rule=rule,
        behaviour=behaviour,
        margin_fraction=margin,
        label=grid.label,
        site_ids=tuple(s.id for s in sites),
        site_nodes=tuple(s.node for s in sites),
        size_w=np.array([s.max_export_w for s in sites], dtype=float),
        flexible=np.array([s.agreement.flexible for s in sites], dtype=bool),
        epoch_s=grid.epoch_s,
        interval_s=grid.interval_s,
        month=month,
        hour=hour,
        generation_w=gen,
        load_w=load,
        export_limit_w=export,
        import_limit_w=imports,
        constraint_names=names,
        binding=binding if binding is not None else np.zeros((n_int, 0), dtype=bool),
        site_loads=site_constraint_matrix(grid.network, sites, names),
        infeasible_intervals=len(infeasible),
        timezone=grid.network.timezone,
        engine_s=time.perf_counter() - t0,
    )
