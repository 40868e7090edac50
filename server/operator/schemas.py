"""Request and response bodies of the operator API (pydantic), with the 2030.5 ranges checked here.

Every write body forbids unknown fields (a misspelt limit must not be silently dropped) and rejects
NaN/Infinity. Units are in the names: `_w` watts, `_s` seconds, `_hundredths` as 2030.5 counts them.
Checks that relate two fields of one body are field validators reading the fields declared before, so
a 422 names the offending field rather than the body.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from gridshare.certs.identity import is_valid_sfdi, normalize_lfdi, sfdi_from_lfdi
from gridshare.server.wire.power import encode_active_power_w
from gridshare.store.models import AgreementKind, ClientKind

T = TypeVar("T")

UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
#: 9999-12-31T23:59:59Z: later "times" are typos, and bounded values cannot overflow a BIGINT.
MAX_EPOCH_S = 253402300799


def _fits_active_power(watts: float) -> float:
    """The value must be publishable: Int16 after the multiplier the wire layer will pick."""
    encode_active_power_w(watts)
    return watts


def _lfdi(value: str) -> str:
    return normalize_lfdi(value)


ActivePowerW = Annotated[float, Field(ge=0), AfterValidator(_fits_active_power)]
PowerW = Annotated[float, Field(ge=0, le=1e12)]
Description = Annotated[str, Field(max_length=32)]
EpochS = Annotated[int, Field(ge=0, le=MAX_EPOCH_S)]
#: Rates and durations are 2030.5 UInt32 but stored in 32-bit signed columns: 68 years is plenty.
INT32_MAX = 2**31 - 1
RateS = Annotated[int, Field(ge=1, le=INT32_MAX)]
Lfdi = Annotated[str, AfterValidator(_lfdi)]
Nmi = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,32}$", description="NMI: 1-32 letters or digits")]
OneHourS = Annotated[int, Field(ge=-3600, le=3600)]
PollResource = Literal["dcap", "edev", "fsa", "derp", "der", "mup"]


class WriteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    total: int
    start: int
    items: list[T]


# --- aggregators, certificates, access ------------------------------------------------------------------


class AggregatorIn(WriteBody):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]( ?[\x21-\x7e])*$")


class AggregatorOut(Out):
    id: int
    name: str
    created_s: int


class CertificateIn(WriteBody):
    pem: str = Field(min_length=1, max_length=65536, description="the client's leaf certificate, PEM")


class CertificateOut(Out):
    id: int
    lfdi: str
    sfdi: int
    kind: ClientKind
    aggregator_id: int | None
    created_s: int
    revoked_s: int | None


class RotateOut(BaseModel):
    registered: CertificateOut
    revoked: CertificateOut


class AccessIn(WriteBody):
    enabled: bool


class AccessOut(BaseModel):
    lfdi: str
    sfdi: int
    kind: ClientKind
    aggregator_id: int | None
    enabled: bool
    revoked_s: int | None


# --- sites and agreements -------------------------------------------------------------------------------


class SiteIn(WriteBody):
    lfdi: Lfdi
    sfdi: int | None = Field(None, description="defaults to the sFDI derived from the lFDI")
    aggregator_id: int | None = Field(None, ge=0, le=2**31 - 1)
    device_category: int = Field(0, ge=0, le=UINT32_MAX)
    nmi: Nmi | None = None
    post_rate_s: RateS | None = None
    registration_pin: int | None = Field(None, ge=0, le=999999)

    @field_validator("sfdi")
    @classmethod
    def _sfdi_of_lfdi(cls, sfdi: int | None, info: ValidationInfo) -> int | None:
        if sfdi is None:
            return None
        if not is_valid_sfdi(sfdi):
            raise ValueError("not a valid sFDI (36-bit prefix and check digit)")
        lfdi = info.data.get("lfdi")
        if lfdi is not None and sfdi_from_lfdi(lfdi) != sfdi:
            raise ValueError(f"not the sFDI of lFDI {lfdi} (that is {sfdi_from_lfdi(lfdi)})")
        return sfdi

    @field_validator("registration_pin")
    @classmethod
    def _pin_check_digit(cls, pin: int | None) -> int | None:
        if pin is not None and not is_valid_sfdi(pin):
            raise ValueError("the last digit must be the 2030.5 check digit of the others (e.g. 111115)")
        return pin


class SitePatch(WriteBody):
    """Only the fields sent change; `nmi` and `post_rate_s` may be null to clear them."""

    nmi: Nmi | None = None
    enabled: bool = None  # type: ignore[assignment]  # absent: unchanged; null is refused
    post_rate_s: RateS | None = None
    device_category: int = Field(None, ge=0, le=UINT32_MAX)  # type: ignore[assignment]


class SiteOut(Out):
    id: int
    lfdi: str
    sfdi: int
    aggregator_id: int | None
    device_category: int
    nmi: str | None
    registration_pin: int
    enabled: bool
    post_rate_s: int | None
    created_s: int
    changed_s: int


class NmiOut(BaseModel):
    """Which EndDevice an NMI is bound to (it gets that network site's envelope) and who may bind it."""

    nmi: str
    site_id: int | None = Field(description="the EndDevice bound to it (null: unbound)")
    site_aggregator_id: int | None = Field(description="that EndDevice's aggregator (null: a device's own)")
    assigned_aggregator_id: int | None = Field(
        description="only this aggregator's EndDevices may bind it (null: not assigned)"
    )
    assigned_s: int | None


class NmiSiteIn(WriteBody):
    site_id: int = Field(ge=0, le=INT32_MAX, description="the EndDevice (site) to bind the NMI to")


class NmiAggregatorIn(WriteBody):
    aggregator_id: int = Field(ge=0, le=INT32_MAX, description="the aggregator whose sites may bind the NMI")


class SchedulePoint(WriteBody):
    month: int = Field(ge=1, le=12)
    hour: int = Field(ge=0, le=23)
    export_w: PowerW | None = None
    import_w: PowerW | None = None


#: Fields each agreement kind uses beyond the site maxima and queue position (design notes §4).
AGREEMENT_FIELDS: dict[AgreementKind, frozenset[str]] = {
    AgreementKind.firm: frozenset(),
    AgreementKind.limited: frozenset({"export_limit_w", "import_limit_w"}),
    AgreementKind.scheduled: frozenset({"schedule"}),
    AgreementKind.staggered: frozenset(
        {"staggered_until_s", "staggered_export_w", "staggered_import_w", "export_limit_w", "import_limit_w"}
    ),
    AgreementKind.dynamic: frozenset({"export_floor_w", "import_floor_w"}),
}
_REQUIRED: dict[tuple[AgreementKind, str], str] = {
    (AgreementKind.scheduled, "schedule"): "a scheduled agreement needs its schedule points",
    (AgreementKind.staggered, "staggered_until_s"): "a staggered agreement needs the time it ends",
}
_MAXIMUM_OF = {
    "export_floor_w": "max_export_w",
    "import_floor_w": "max_import_w",
    "export_limit_w": "max_export_w",
    "import_limit_w": "max_import_w",
    "staggered_export_w": "max_export_w",
    "staggered_import_w": "max_import_w",
}


class AgreementIn(WriteBody):
    """A site's connection agreement; fields another kind uses are refused, so nothing is ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)

    kind: AgreementKind
    max_export_w: PowerW | None = None
    max_import_w: PowerW | None = None
    export_limit_w: PowerW | None = None
    import_limit_w: PowerW | None = None
    export_floor_w: PowerW | None = None
    import_floor_w: PowerW | None = None
    staggered_until_s: EpochS | None = None
    staggered_export_w: PowerW | None = None
    staggered_import_w: PowerW | None = None
    schedule: list[SchedulePoint] | None = Field(None, max_length=288)
    queue_position: int | None = Field(None, ge=0, le=2**31 - 1)

    @field_validator(
        "export_limit_w",
        "import_limit_w",
        "export_floor_w",
        "import_floor_w",
        "staggered_until_s",
        "staggered_export_w",
        "staggered_import_w",
        "schedule",
    )
    @classmethod
    def _fits_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        name = info.field_name or ""
        if kind is None:  # the kind itself was invalid; that error is reported already
            return value
        if value is None:
            if (kind, name) in _REQUIRED:
                raise ValueError(_REQUIRED[kind, name])
            return value
        if name not in AGREEMENT_FIELDS[kind]:
            raise ValueError(f"not used by a {kind} agreement")
        maximum_name = _MAXIMUM_OF.get(name)
        maximum = info.data.get(maximum_name) if maximum_name else None
        if maximum is not None and value > maximum:
            raise ValueError(f"{value} W is above {maximum_name} {maximum} W")
        return value

    @field_validator("schedule")
    @classmethod
    def _one_point_per_hour(cls, points: list[SchedulePoint] | None) -> list[SchedulePoint] | None:
        if points is None:
            return None
        if not points:
            raise ValueError("a schedule needs at least one point")
        seen: set[tuple[int, int]] = set()
        for point in points:
            if (point.month, point.hour) in seen:
                raise ValueError(f"month {point.month} hour {point.hour} is given twice")
            seen.add((point.month, point.hour))
        return points


class AgreementOut(Out):
    site_id: int
    kind: AgreementKind
    max_export_w: float | None
    max_import_w: float | None
    export_limit_w: float | None
    import_limit_w: float | None
    export_floor_w: float | None
    import_floor_w: float | None
    staggered_until_s: int | None
    staggered_export_w: float | None
    staggered_import_w: float | None
    schedule: list[dict[str, Any]] | None
    queue_position: int | None


# --- function sets and programs -------------------------------------------------------------------------


class FsaIn(WriteBody):
    description: Description = ""


class FsaOut(Out):
    id: int
    mrid: str
    description: str
    changed_s: int


class ProgramIn(WriteBody):
    fsa_id: int = Field(ge=0, le=2**31 - 1)
    description: Description = ""
    primacy: int = Field(ge=0, le=255, description="lower wins (2030.5 PrimacyType, UInt8)")


class ProgramPatch(WriteBody):
    fsa_id: int = Field(None, ge=0, le=2**31 - 1)  # type: ignore[assignment]
    description: Description = None  # type: ignore[assignment]
    primacy: int = Field(None, ge=0, le=255)  # type: ignore[assignment]


class ProgramOut(Out):
    id: int
    fsa_id: int
    mrid: str
    description: str
    primacy: int
    version: int
    changed_s: int


# --- rates ------------------------------------------------------------------------------------------------


class RatesPatch(WriteBody):
    """Run-time rates; null removes an override (the setting applies again)."""

    poll_rates_s: dict[PollResource, RateS | None] = Field(default_factory=dict)
    mup_post_rate_s: RateS | None = Field(None, description="applied to every MirrorUsagePoint")


class RatesOut(BaseModel):
    poll_rates_s: dict[str, int]
    mup_post_rate_s: int
    overridden: list[str] = Field(description="keys whose value comes from an operator, not settings")


# --- read-only views --------------------------------------------------------------------------------------


class TelemetryOut(BaseModel):
    id: int
    mup_id: int
    mup_mrid: str
    reading_mrid: str
    reading_description: str | None
    reading_type: dict[str, Any]
    time_s: int
    duration_s: int | None
    value: int
    power_of_ten: int
    scaled_value: float = Field(description="value x 10^power_of_ten, in the reading type's unit")
    quality_flags: int | None
    received_s: int


class ResponseOut(Out):
    id: int
    site_id: int
    control_id: int | None
    subject_mrid: str
    status: int
    created_s: int
    received_s: int


class LogEventOut(Out):
    id: int
    site_id: int
    created_s: int
    function_set: int
    log_event_code: int
    log_event_id: int
    log_event_pen: int
    profile_id: int
    details: str | None
    extended_data: int | None


class AuditOut(Out):
    id: int
    at_s: int
    actor: str
    role: str
    method: str
    path: str
    action: str
    target: str
    details: dict[str, Any] | None


# --- subscriptions and notifications ------------------------------------------------------------------


class SubscriptionOut(BaseModel):
    id: int
    aggregator_id: int
    site_id: int | None = Field(description="EndDevice whose SubscriptionList holds it; null: /edev/0")
    client_lfdi: str
    resource_href: str
    notification_uri: str
    limit: int
    created_s: int
    changed_s: int
    pending: int = Field(description="notifications not yet delivered nor abandoned")
    last_delivered_s: int | None
    failed_s: int | None = Field(description="set when deliveries kept failing; cleared by a delivery")
    last_error: str | None
    cancelled_s: int | None = Field(description="cancelled by the server (resource deleted); kept until sent")


class NotificationOut(Out):
    id: int
    subscription_id: int
    created_s: int
    attempts: int
    next_attempt_s: int
    delivered_s: int | None
    abandoned_s: int | None
    last_error: str | None
    body: str


class NotificationStatusOut(BaseModel):
    changes: int = Field(description="the change counters now (publication + device activity)")
    scanned: int | None = Field(description="the change counters the notifier last finished scanning")
    caught_up: bool = Field(
        description="every change so far is in the outbox and nothing is about to be sent"
    )
    pending: int
    in_progress: int = Field(description="pending and not yet attempted, or due now")
    waiting_retry: int = Field(description="pending after a failed attempt, waiting for the next one")
    failed_subscriptions: int
