"""The fleet a scenario describes: which devices sit behind each site, who complies, who loses comms.

Every site of the network with an NMI is one simulated connection point. Its PV and load come from
the site's forecast parameters in the network file (so the engine and the fleet agree on sizes);
batteries, EV chargers and non-compliance are drawn by share with the scenario's seed, then
per-site overrides apply. Draws are reproducible: the same scenario gives the same fleet.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from gridshare.grid.netfile import NetworkFile
from gridshare.grid.network import Site
from gridshare.grid.units import W_PER_KW
from gridshare.sim.devices import Battery, EvCharger, PvInverter
from gridshare.sim.scenario import BatterySpec, EvSpec, Scenario
from gridshare.sim.site import SiteModel
from gridshare.sim.weather import clear_sky_share, cloud_series, load_series, recorded_share, shifted

#: Sites up to this PV and load (W) count as households for the fleet's battery and EV shares.
HOUSEHOLD_W = 30_000.0


@dataclass
class SimSite:
    """One connection point: its devices, its inputs per step and what it is told to do."""

    spec: Site
    model: SiteModel
    twin: SiteModel | None  # the compliant twin of a non-compliant site
    pv_available_w: np.ndarray  # (n_steps,)
    load_w: np.ndarray  # (n_steps,)
    response_delay_s: float
    group: str | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def non_compliant(self) -> bool:
        return self.twin is not None

    def kinds(self) -> list[str]:
        out = []
        if self.model.pv:
            out.append(f"PV {self.model.pv.rated_w / 1000:g} kW")
        if self.model.battery:
            out.append(f"battery {self.model.battery.capacity_wh / 1000:g} kWh")
        if self.model.ev:
            out.append(f"EV {self.model.ev.max_w / 1000:g} kW")
        return out


def _battery(spec: BatterySpec) -> Battery:
    return Battery(
        capacity_wh=spec.capacity_kwh * 1000,
        charge_max_w=spec.power_kw * 1000,
        discharge_max_w=spec.power_kw * 1000,
        soc_wh=spec.initial_soc * spec.capacity_kwh * 1000,
    )


def _ev(spec: EvSpec) -> EvCharger:
    return EvCharger(spec.power_kw * 1000, spec.energy_kwh * 1000, spec.arrive_h, spec.depart_h)


def step_times(start_s: int, duration_s: int, step_s: int) -> np.ndarray:
    return start_s + step_s * np.arange(math.ceil(duration_s / step_s), dtype=np.int64)


def build_fleet(scenario: Scenario, nf: NetworkFile, times_s: np.ndarray) -> list[SimSite]:
    """One SimSite per network site with an NMI, in network-file order."""
    net = nf.network
    fleet_spec = scenario.fleet
    rng = np.random.default_rng(scenario.seed)
    step_s = float(times_s[1] - times_s[0]) if len(times_s) > 1 else float(scenario.step_s)
    profile, profile_path = fleet_spec.pv_profile, scenario.pv_profile_path()
    if profile is not None and profile_path is not None:
        # a record has its own clouds: it replaces both the clear sky and the simulated ones
        clear = recorded_share(
            profile_path, times_s, net.timezone, profile.time_column, profile.share_column, profile.daily
        )
        clouds = np.ones(len(times_s))
    else:
        clear = clear_sky_share(times_s, net.latitude_deg, net.longitude_deg)
        clouds = cloud_series(len(times_s), step_s, fleet_spec.cloud_variability, rng)
    unknown = [k for k in fleet_spec.sites if k not in {s.id for s in nf.sites}]
    if unknown:
        raise ValueError(f"fleet.sites names sites the network does not have: {', '.join(unknown[:5])}")
    groups = _group_members(scenario, [s.id for s in nf.sites if s.nmi])
    out: list[SimSite] = []
    for site in nf.sites:
        if not site.nmi:
            continue
        override = fleet_spec.sites.get(site.id)
        # the scenario file's overrides are in kW (its unit, like the network file's); the model in W
        pv_w = override.pv_kw * W_PER_KW if override and override.pv_kw is not None else site.pv_w
        load_w = override.load_kw * W_PER_KW if override and override.load_kw is not None else site.load_w
        # Shares of batteries and EVs are drawn among households; larger sites get them only by override.
        household = pv_w <= HOUSEHOLD_W and load_w <= HOUSEHOLD_W
        draws = rng.random(3)
        battery = (
            _battery(override.battery)
            if override and override.battery
            else _battery(fleet_spec.battery)
            if draws[0] < fleet_spec.battery_share and pv_w > 0 and household
            else None
        )
        ev = (
            _ev(override.ev)
            if override and override.ev
            else _ev(fleet_spec.ev)
            if draws[1] < fleet_spec.ev_share and household
            else None
        )
        non_compliant = (
            override.non_compliant
            if override and override.non_compliant is not None
            else bool(draws[2] < fleet_spec.non_compliant_share)
        )
        ramp = pv_w * fleet_spec.pv_ramp_pct_per_s / 100.0
        model = SiteModel(pv=PvInverter(pv_w, ramp) if pv_w > 0 else None, battery=battery, ev=ev)
        shift = int(rng.integers(-5, 6) * 60 / step_s)
        pv_series_w = pv_w * clear * shifted(clouds, shift) * rng.uniform(0.95, 1.0)
        load = load_series(times_s, net.timezone, load_w, site.load_profile, fleet_spec.load_noise, rng)
        delay = (
            override.response_delay_s
            if override and override.response_delay_s is not None
            else fleet_spec.response_delay_s
        )
        out.append(
            SimSite(
                spec=site,
                model=model,
                twin=copy.deepcopy(model) if non_compliant else None,
                pv_available_w=pv_series_w,
                load_w=load,
                response_delay_s=delay,
                group=groups.get(site.id),
            )
        )
    return out


def _group_members(scenario: Scenario, site_ids: list[str]) -> dict[str, str]:
    """site id -> aggregator group name; counted groups take the next unassigned sites in order."""
    members: dict[str, str] = {}
    for g in scenario.fleet.groups:
        if g.sites is not None:
            unknown = [s for s in g.sites if s not in site_ids]
            if unknown:
                raise ValueError(f"group {g.name} names unknown sites: {', '.join(unknown[:5])}")
            chosen = g.sites
        else:
            free = [s for s in site_ids if s not in members]
            chosen = free[: g.count]
        for s in chosen:
            if s in members:
                raise ValueError(f"site {s} is in two groups ({members[s]}, {g.name})")
            members[s] = g.name
    return members


def outage_windows(
    scenario: Scenario, sites: list[SimSite], start_s: int, timezone: str
) -> dict[str, list[tuple[float, float]]]:
    """site id -> its outage windows, from faults by site list, share of the fleet, or group."""
    rng = np.random.default_rng(scenario.seed + 7919)
    ids = [s.id for s in sites]
    by_group: dict[str, list[str]] = {}
    for s in sites:
        if s.group:
            by_group.setdefault(s.group, []).append(s.id)
    windows: dict[str, list[tuple[float, float]]] = {}
    for i, fault in enumerate(scenario.faults):
        span = scenario.fault_window_s(fault, start_s, timezone)
        if fault.sites is not None:
            unknown = [s for s in fault.sites if s not in ids]
            if unknown:
                raise ValueError(f"faults[{i}].sites names unknown sites: {', '.join(unknown[:5])}")
            hit = fault.sites
        elif fault.group is not None:
            if fault.group not in by_group:
                raise ValueError(f"faults[{i}].group: no group named {fault.group!r}")
            hit = by_group[fault.group]
        else:
            count = max(1, round((fault.share or 0) * len(ids)))
            hit = list(rng.choice(ids, size=min(count, len(ids)), replace=False))
        for site_id in hit:
            windows.setdefault(str(site_id), []).append(span)
    return windows
