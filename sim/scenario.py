"""A scenario file: the network, the fleet, the allocation rule, the duration and the faults.

Validated by pydantic with unknown keys refused, so a typo (`duraton_h:`) is an error that names
the field rather than a silently different run. Relative paths are relative to the scenario file.
The format is documented in docs/simulator.md.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gridshare.envelopes.compute import POLICIES
from gridshare.grid.locate import located_problems
from gridshare.grid.netfile import NetworkFile, load_network_file, parse_network_document
from gridshare.grid.network import NetworkError
from gridshare.sim.feeder import suburb_document

#: Poll rates a spawned server advertises unless the scenario says otherwise. Discovery resources
#: change rarely and cost the server most (a DERProgramList derives every control's status), so they
#: are polled hourly; the schedule itself every 15 minutes, well inside the fallback timeout.
SIM_POLL_RATES_S = {"dcap": 3600, "edev": 3600, "fsa": 3600, "derp": 900, "der": 900, "mup": 3600}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Generated(_Strict):
    """A synthetic suburb (sim/feeder.py)."""

    sites: int = Field(50, ge=1, le=100_000)
    transformers: int = Field(5, ge=1)
    seed: int = 1
    firm_share: float = Field(0.2, ge=0, le=1)
    export_kva_per_site: float = Field(4.5, gt=0)
    tranche_share: float = Field(0.6, ge=0, le=1)


class NetworkSpec(_Strict):
    file: Path | None = None
    generate: Generated | None = None

    @model_validator(mode="after")
    def _one_source(self) -> NetworkSpec:
        if (self.file is None) == (self.generate is None):
            raise ValueError("give exactly one of `file` (a network file) or `generate` (a synthetic suburb)")
        return self


class ClockSpec(_Strict):
    """`accelerated`: simulated time runs `factor` times faster than the wall clock; `realtime`: soak."""

    mode: Literal["accelerated", "realtime"] = "accelerated"
    factor: float = Field(720.0, gt=0, le=100_000)


class ServerSpec(_Strict):
    """`spawn` starts a GridShare server on loopback sharing the simulator's clock; `connect` uses one."""

    mode: Literal["spawn", "connect"] = "spawn"
    url: str | None = None
    pki_dir: Path | None = Field(None, description="connect: the server's dev PKI (signs the fleet's certs)")
    poll_rates_s: dict[str, int] = Field(default_factory=lambda: dict(SIM_POLL_RATES_S))
    post_rate_s: int = Field(900, ge=1)
    recompute_interval_s: int = Field(3600, ge=60)
    envelope_interval_s: int = Field(300, ge=60)
    envelope_horizon_s: int = Field(86400, ge=3600)
    default_export_limit_w: float = Field(1500.0, ge=0)
    default_import_limit_w: float | None = Field(None, ge=0)
    database_url: str = ""

    @field_validator("poll_rates_s")
    @classmethod
    def _merge_rates(cls, value: dict[str, int]) -> dict[str, int]:
        return {**SIM_POLL_RATES_S, **value}

    @model_validator(mode="after")
    def _connect_needs(self) -> ServerSpec:
        if self.mode == "connect" and (not self.url or self.pki_dir is None):
            raise ValueError("connect mode needs `url` and `pki_dir`")
        return self


class BatterySpec(_Strict):
    capacity_kwh: float = Field(13.5, gt=0)
    power_kw: float = Field(5.0, gt=0)
    initial_soc: float = Field(0.3, ge=0, le=1)


class EvSpec(_Strict):
    power_kw: float = Field(7.0, gt=0)
    energy_kwh: float = Field(20.0, gt=0)
    arrive_h: float = Field(18.0, ge=0, lt=24)
    depart_h: float = Field(7.5, ge=0, lt=24)


class SiteOverride(_Strict):
    battery: BatterySpec | None = None
    ev: EvSpec | None = None
    non_compliant: bool | None = None
    response_delay_s: float | None = Field(None, ge=0)
    pv_kw: float | None = Field(None, ge=0)
    load_kw: float | None = Field(None, ge=0, description="base (uncontrollable) load peak")


class GroupSpec(_Strict):
    """Sites managed by one aggregator certificate instead of their own device certificates."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    sites: list[str] | None = None
    count: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _which(self) -> GroupSpec:
        if (self.sites is None) == (self.count is None):
            raise ValueError("give the group's `sites` (ids) or a `count` of sites")
        return self


class PvProfileSpec(_Strict):
    """A recorded PV output series (CSV) in place of pvlib's clear sky and the simulated clouds.

    One row per sample: a time (ISO 8601; without an offset it is the network's local time) and the
    output as a share of rated power (kW per kW of inverter). With `daily`, only the time of day is
    used, so one recorded day can drive a run on any date.
    """

    file: Path = Field(description="CSV with a header row, relative to the scenario file")
    time_column: str = "time"
    share_column: str = "share"
    daily: bool = Field(False, description="use the record by local time of day, whatever its date")


class FleetSpec(_Strict):
    fallback_timeout_s: float = Field(3600.0, gt=0)
    response_delay_s: float = Field(5.0, ge=0)
    pv_ramp_pct_per_s: float = Field(0.27, gt=0, description="AS/NZS 4777.2 soft ramp-up: 16.67 %/min")
    non_compliant_share: float = Field(0.0, ge=0, le=1)
    battery_share: float = Field(0.3, ge=0, le=1)
    ev_share: float = Field(0.2, ge=0, le=1)
    battery: BatterySpec = Field(default_factory=BatterySpec)
    ev: EvSpec = Field(default_factory=EvSpec)
    cloud_variability: float = Field(0.3, ge=0, le=1)
    pv_profile: PvProfileSpec | None = Field(
        None, description="a recorded PV series instead of clear sky and simulated clouds"
    )
    load_noise: float = Field(0.15, ge=0, le=1)
    background_noise: float = Field(0.0, ge=0, le=1)
    list_page_size: int = Field(64, ge=1, le=500)
    groups: list[GroupSpec] = Field(default_factory=list)
    sites: dict[str, SiteOverride] = Field(default_factory=dict)


class FaultSpec(_Strict):
    """An outage: from `start` (local time of day, or ISO date-time) for `duration_h` hours."""

    sites: list[str] | None = None
    share: float | None = Field(None, gt=0, le=1)
    group: str | None = None
    start: str
    duration_h: float = Field(gt=0)

    @model_validator(mode="after")
    def _who(self) -> FaultSpec:
        if sum(x is not None for x in (self.sites, self.share, self.group)) != 1:
            raise ValueError("give exactly one of `sites`, `share` or `group`")
        return self


class ReportSpec(_Strict):
    sites: list[str] = Field(default_factory=list, description="sites plotted envelope against actual")
    format: Literal["markdown", "html"] = "markdown"
    constraints: int = Field(6, ge=1, le=50, description="how many of the most loaded constraints to plot")


class PandapowerSpec(_Strict):
    """A planner's own pandapower network (`pp.to_json`): the fleet's behaviour is checked against it.

    The envelope engine keeps planning on `network`; this network, with its own element ratings, is
    only solved (AC) from what the fleet did. Loaded and checked by `sim.pandapower_net`.
    """

    file: Path = Field(description="pandapower JSON, relative to the scenario file")
    buses: dict[str, str] = Field(
        default_factory=dict, description="engine node -> pandapower bus name (default: the same name)"
    )
    background: Literal["engine", "net"] = Field(
        "engine",
        description="`engine`: the file's loads/sgens/storage are off and every node injects the engine's "
        "background forecast; `net`: the file's elements stay as they are",
    )


class Scenario(_Strict):
    name: str = "scenario"
    network: NetworkSpec
    start: date | datetime | None = Field(None, description="local date (midnight) or date-time")
    duration_h: float = Field(24.0, gt=0, le=24 * 14)
    step_s: int = Field(60, ge=1, le=900)
    policy: str = "pro-rata"
    powerflow: Literal["linear", "ac"] = Field(
        "linear", description="the engine's linear model, or AC power flow (pandapower) of the same network"
    )
    pandapower: PandapowerSpec | None = Field(
        None, description="solve a given pandapower network instead of the engine's (implies AC)"
    )
    clock: ClockSpec = Field(default_factory=ClockSpec)
    server: ServerSpec = Field(default_factory=ServerSpec)
    fleet: FleetSpec = Field(default_factory=FleetSpec)
    faults: list[FaultSpec] = Field(default_factory=list)
    report: ReportSpec = Field(default_factory=ReportSpec)
    seed: int = 1
    #: directory of the scenario file, for relative paths (set by `load_scenario`)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in POLICIES:
            raise ValueError(f"unknown policy {value!r} (choose from {', '.join(POLICIES)})")
        return value

    @property
    def duration_s(self) -> int:
        return round(self.duration_h * 3600)

    def network_document(self) -> dict[str, Any]:
        """The network as a document: the file's, or a generated suburb."""
        if self.network.generate is not None:
            g = self.network.generate
            return suburb_document(
                g.sites, g.transformers, g.seed, g.firm_share, g.export_kva_per_site, g.tranche_share
            )
        assert self.network.file is not None  # NetworkSpec allows exactly one of `file` and `generate`
        path = self.network.file if self.network.file.is_absolute() else self.base_dir / self.network.file
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ScenarioError(f"network.file: cannot read {path}: {reason}") from None
        try:
            load_network_file(path)  # validates, naming each field
        except NetworkError as exc:
            own = [p for p in exc.problems if not p.path]  # reading errors already name file and line
            located = located_problems(str(path), text, [(p.path, p.message) for p in exc.problems if p.path])
            raise ScenarioError("network.file: " + "; ".join([*(str(p) for p in own), *located])) from None
        doc: dict[str, Any] = yaml.safe_load(text)
        return doc

    def pandapower_path(self) -> Path | None:
        """The given pandapower network's file, resolved against the scenario's directory."""
        if self.pandapower is None:
            return None
        path = self.pandapower.file
        return path if path.is_absolute() else self.base_dir / path

    def network_file(self) -> NetworkFile:
        return parse_network_document(self.network_document(), source=self.name)

    def pv_profile_path(self) -> Path | None:
        """The recorded PV series' file, resolved against the scenario's directory."""
        if self.fleet.pv_profile is None:
            return None
        path = self.fleet.pv_profile.file
        return path if path.is_absolute() else self.base_dir / path

    def start_s(self, timezone: str) -> int:
        """Epoch seconds of the run's start; default the next midsummer midnight of the network's zone."""
        zone = ZoneInfo(timezone)
        value = self.start
        if value is None:
            value = date(2026, 12 if _southern(timezone) else 6, 21)
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=zone)
        else:
            moment = datetime.combine(value, time(0), tzinfo=zone)
        return int(moment.timestamp())

    def fault_window_s(self, fault: FaultSpec, start_s: int, timezone: str) -> tuple[int, int]:
        """(from, until) epoch seconds of an outage; a time of day is on the run's first local day."""
        zone = ZoneInfo(timezone)
        if re.fullmatch(r"\d{1,2}:\d{2}", fault.start):
            hours, minutes = (int(x) for x in fault.start.split(":"))
            day = datetime.fromtimestamp(start_s, zone).replace(hour=0, minute=0, second=0, microsecond=0)
            begin = day + timedelta(hours=hours, minutes=minutes)
        else:
            begin = datetime.fromisoformat(fault.start)
            begin = begin if begin.tzinfo else begin.replace(tzinfo=zone)
        first = int(begin.timestamp())
        return first, first + round(fault.duration_h * 3600)


def _southern(timezone: str) -> bool:
    return timezone.startswith(("Australia/", "Pacific/Auckland", "Antarctica/")) or timezone in (
        "America/Santiago",
        "America/Sao_Paulo",
        "Africa/Johannesburg",
    )


class ScenarioError(ValueError):
    """A scenario that cannot run, with every problem named by its field."""


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping")
    raw = {**raw, **(overrides or {})}
    return parse_scenario(raw, path.parent, source=str(path))


def parse_scenario(raw: dict[str, Any], base_dir: Path = Path("."), source: str = "<scenario>") -> Scenario:
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"{source}: {problems}") from None
    scenario.base_dir = base_dir
    pv_path = scenario.pv_profile_path()
    if pv_path is not None and not pv_path.is_file():
        raise ScenarioError(f"{source}: fleet.pv_profile.file: {pv_path} does not exist")
    if scenario.pandapower is not None:
        # a given pandapower network is only ever solved by AC power flow; an explicit `linear` is a mistake
        if "powerflow" in scenario.model_fields_set and scenario.powerflow == "linear":
            raise ScenarioError(
                f"{source}: powerflow: `linear` cannot check a given `pandapower` network (it is solved "
                "by AC power flow); drop `powerflow` or set it to `ac`"
            )
        scenario.powerflow = "ac"
        path = scenario.pandapower_path()
        assert path is not None
        if not path.is_file():
            raise ScenarioError(f"{source}: pandapower.file: {path} does not exist")
    return scenario
