"""JSON shapes of the operator's views (networks, constraints, sites, compliance, curtailment, fleet).

Built from the service layer's dataclasses (server/operator/services/) with `from_attributes`, so a
field added there shows up here by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gridshare.server.operator.network_schemas import DerateOut


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RecomputationOut(_Out):
    id: int
    at_s: int
    status: str = Field(description="published | skipped | failed")
    reason: str
    detail: dict[str, Any]


class ConstraintOut(_Out):
    name: str = Field(description="thermal:<branch> or voltage:<node>")
    kind: str = Field(description="thermal (W) or voltage (pu)")
    asset: str
    direction: str = Field(description="export (reverse flow, voltage rise) or import")
    unit: str
    rating: list[float | None] = Field(
        description="per interval; lower where a derate applies, null where absent"
    )
    forecast: list[float | None] = Field(description="loading before flexible sites, per interval")
    loading: list[float | None] = Field(description="loading with flexible sites at their limits")
    headroom: list[float | None] = Field(description="what was left for flexible sites before allocation")
    spare: list[float | None] = Field(description="rating minus loading with flexible sites at their limits")
    binding: list[bool]
    min_spare: float | None
    min_spare_at_s: int | None
    min_spare_pct: float | None = Field(
        description="least spare, thermal: % of the rating; voltage: of the band"
    )
    min_headroom: float | None
    min_headroom_at_s: int | None
    min_headroom_pct: float | None = Field(description="thermal: of the rating; voltage: of the band to 1 pu")
    peak_loading_pct: float | None
    binding_intervals: int
    derated: bool


class WorstConstraintOut(_Out):
    name: str
    direction: str
    unit: str
    min_spare: float | None
    min_spare_pct: float | None
    min_spare_at_s: int | None
    min_headroom: float | None
    min_headroom_pct: float | None
    min_headroom_at_s: int | None
    binding_intervals: int


class DevicesOut(BaseModel):
    total: int = Field(description="EndDevices bound to the network's sites (by NMI)")
    polling: int = Field(description="reached the server within 3 DERControlList poll periods")
    late: int
    presumed_on_fallback: int = Field(description="silent for longer than device_fallback_timeout_s")
    never_connected: int


class NetworkSummaryOut(BaseModel):
    name: str
    network_id: int = Field(description="the id of the network's current version")
    timezone: str
    loaded_s: int = Field(description="when its current version was loaded")
    loaded_by: str
    sites: int
    dynamic_sites: int
    registered_sites: int = Field(description="its sites an EndDevice is bound to (by NMI)")
    current_set_id: int | None = Field(description="the envelope set its devices see now")
    state: str = Field(description="dynamic | stale | fallback | unknown: what devices run on now")
    state_since_s: int | None
    state_reason: str
    state_detail: str
    envelopes_until_s: int | None
    last_recomputation: RecomputationOut | None
    last_published_s: int | None
    next_recomputation_s: int | None = Field(description="the next scheduled run at the latest")
    devices: DevicesOut
    worst_constraint: WorstConstraintOut | None
    binding_constraints: int
    derates_active: list[DerateOut]
    derates_planned: list[DerateOut]


class ConstraintsOut(_Out):
    network: str
    set_id: int
    computed_s: int
    interval_s: int
    starts_s: list[int]
    fallback_set: bool = Field(
        description="the newest set is fallback-valued; this report is the last computed one"
    )
    constraints: list[ConstraintOut]


class NetworkSiteOut(BaseModel):
    network_site_id: str
    node: str
    nmi: str | None
    agreement: str
    agreement_kind: str
    max_export_w: float
    max_import_w: float
    site_id: int | None = Field(description="the EndDevice bound to it by NMI (null: none registered)")
    contact_state: str | None


class ContactOut(_Out):
    state: str = Field(description="polling | late | presumed on fallback | never connected")
    last_s: int | None
    first_s: int | None
    requests: int
    derc_polls: int
    last_derc_s: int | None
    poll_interval_s: float | None = Field(description="observed time between DERControlList polls (smoothed)")
    advertised_poll_s: int
    silent_s: int | None


class EnvelopeIntervalOut(_Out):
    start_s: int
    end_s: int
    export_limit_w: float | None
    import_limit_w: float | None
    generation_limit_w: float | None
    load_limit_w: float | None
    source: str = Field(description="dynamic | fallback | outage | firm | fixed (<agreement kind>)")
    export_set_by: str = Field(description="binding constraints this site's export moves, or the agreement")
    import_set_by: str


class DefaultOut(_Out):
    export_limit_w: float | None
    import_limit_w: float | None
    generation_limit_w: float | None
    load_limit_w: float | None
    set_grad_w_hundredths: int | None
    scope: str = Field(description="site (its own) | program (the program-wide default) | none")
    why: str
    overridden: bool


class TelemetryLatestOut(_Out):
    time_s: int
    export_w: float = Field(description="net export at the connection point; import is negative")
    received_s: int | None


class SiteStatusOut(_Out):
    site_id: int
    lfdi: str
    nmi: str | None
    enabled: bool
    aggregator_id: int | None
    network: str | None
    network_site_id: str | None
    node: str | None
    agreement: str
    agreement_kind: str | None
    max_export_w: float | None
    max_import_w: float | None
    set_id: int | None
    envelope: list[EnvelopeIntervalOut]
    default: DefaultOut
    contact: ContactOut
    telemetry: TelemetryLatestOut | None


class BreachOut(_Out):
    direction: str
    start_s: int
    end_s: int
    max_excess_w: float = Field(description="largest reading above what the device was allowed, W")
    energy_over_wh: float
    limit_w: float
    measured_w: float


class AllowanceOut(_Out):
    response_s: int
    ramp_w_per_s: float | None
    tolerance_w: float
    rating_w: float


class SiteComplianceOut(BaseModel):
    site_id: int
    nmi: str | None
    network_site_id: str | None
    from_s: int
    until_s: int
    readings: int
    intervals: int
    compliant_intervals: int
    share_compliant: float | None
    worst_excess_w: float
    allowance: AllowanceOut
    breaches: list[BreachOut]


class FleetComplianceOut(BaseModel):
    network: str
    from_s: int
    until_s: int
    sites_assessed: int
    sites_non_compliant: int
    presumed_on_fallback: list[int] = Field(
        description="site ids silent for longer than their fallback timeout"
    )
    sites: list[SiteComplianceOut] = Field(description="worst first")


class DayOut(_Out):
    day: str
    intervals: int
    telemetry_intervals: int
    potential_export_kwh: float
    curtailed_export_kwh: float
    potential_import_kwh: float
    curtailed_import_kwh: float


class GuaranteeOut(_Out):
    max_annual_pct: float
    price_per_kwh: float
    currency: str


class SettlementOut(_Out):
    curtailed_kwh: float
    potential_kwh: float
    curtailed_pct: float | None
    guarantee: GuaranteeOut | None
    allowed_kwh: float | None
    beyond_kwh: float
    owed: float


class SiteLedgerOut(BaseModel):
    site_id: int
    network: str
    network_site_id: str
    nmi: str | None
    year: int
    from_s: int | None
    until_s: int
    settlement: SettlementOut
    days: list[DayOut]


class LedgerOut(BaseModel):
    network: str
    year: int
    method: str
    sites: list[SiteLedgerOut]


class FleetRowOut(_Out):
    site_id: int
    lfdi: str
    nmi: str | None
    enabled: bool
    aggregator_id: int | None
    network: str | None
    network_site_id: str | None
    contact: ContactOut
