"""SQLAlchemy 2 models. Times are Unix epoch seconds (UTC) as integers, matching 2030.5 TimeType.

Power values are stored in watts as floats; the wire layer chooses a multiplier when it renders them.
"""

from __future__ import annotations

import enum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    case,
    func,
    literal_column,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from gridshare.core.der_control_fields import CONTROL_BASE_NAMES, DEFAULT_CONTROL_NAMES, check_attributes


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class ClientKind(enum.StrEnum):
    device = "device"
    aggregator = "aggregator"


class AgreementKind(enum.StrEnum):
    """Connection methods from the Ameren flexible-interconnection report (design notes §4)."""

    firm = "firm"
    limited = "limited"
    scheduled = "scheduled"
    staggered = "staggered"
    dynamic = "dynamic"


def _enum(e: type[enum.Enum], name: str) -> Enum:
    return Enum(e, name=name, native_enum=False, length=16, validate_strings=True)


class Aggregator(Base):
    __tablename__ = "aggregator"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_s: Mapped[int] = mapped_column(BigInteger)
    certificates: Mapped[list[ClientCertificate]] = relationship(back_populates="aggregator")


class ClientCertificate(Base):
    """A client certificate the operator registered (aggregators) or that registered itself (devices)."""

    __tablename__ = "client_certificate"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lfdi: Mapped[str] = mapped_column(String(40), unique=True)
    sfdi: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[ClientKind] = mapped_column(_enum(ClientKind, "client_kind"))
    aggregator_id: Mapped[int | None] = mapped_column(ForeignKey("aggregator.id", ondelete="CASCADE"))
    created_s: Mapped[int] = mapped_column(BigInteger)
    revoked_s: Mapped[int | None] = mapped_column(BigInteger)
    aggregator: Mapped[Aggregator | None] = relationship(back_populates="certificates")


class Site(Base):
    """A customer connection point and the EndDevice that represents it on the wire.

    `nmi` binds the EndDevice to a site of the network file, whose envelope it receives; the unique
    index makes one NMI belong to at most one EndDevice, even when two clients claim it at once.
    """

    __tablename__ = "site"
    __table_args__ = (
        UniqueConstraint("lfdi", "aggregator_id", name="uq_site_lfdi_aggregator"),
        Index("ix_site_aggregator", "aggregator_id"),
        Index("ix_site_lfdi", "lfdi"),
        Index("uq_site_nmi", "nmi", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lfdi: Mapped[str] = mapped_column(String(40))
    sfdi: Mapped[int] = mapped_column(BigInteger)
    aggregator_id: Mapped[int | None] = mapped_column(ForeignKey("aggregator.id", ondelete="CASCADE"))
    device_category: Mapped[int] = mapped_column(BigInteger, default=0)
    nmi: Mapped[str | None] = mapped_column(String(32))
    registration_pin: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    post_rate_s: Mapped[int | None] = mapped_column(BigInteger)  # UInt32 on the wire
    created_s: Mapped[int] = mapped_column(BigInteger)
    changed_s: Mapped[int] = mapped_column(BigInteger)

    ders: Mapped[list[Der]] = relationship(back_populates="site", cascade="all, delete-orphan")
    agreement: Mapped[ConnectionAgreement | None] = relationship(
        back_populates="site", cascade="all, delete-orphan", uselist=False
    )


#: An NMI's one spelling (AEMO: ten characters, an optional eleventh checksum digit; any case), as SQL
#: with literal constants, so that a query written with it uses `ix_site_nmi_canonical` (an index on an
#: expression serves only a query naming the same expression; bound parameters would not match).
_SITE_TABLE = cast(Table, Site.__table__)
_SITE_NMI = _SITE_TABLE.c.nmi
SITE_NMI_CANONICAL = case(
    (
        func.length(_SITE_NMI) == literal_column("11"),
        func.upper(func.substr(_SITE_NMI, literal_column("1"), literal_column("10"))),
    ),
    else_=func.upper(_SITE_NMI),
)
#: Who holds an NMI, under any spelling, without reading every site (store.queries.nmis.holder_of). Given
#: its table outright: SQLAlchemy finds an index's table through plain columns, not through a CASE.
Index("ix_site_nmi_canonical", SITE_NMI_CANONICAL, _table=_SITE_TABLE)


class NmiAssignment(Base):
    """An NMI the operator assigned to an aggregator: only that aggregator's EndDevices may bind it.

    Binding itself is `Site.nmi`; an assignment says who may bind (see store.queries.nmis).
    """

    __tablename__ = "nmi_assignment"
    nmi: Mapped[str] = mapped_column(String(32), primary_key=True)
    aggregator_id: Mapped[int] = mapped_column(ForeignKey("aggregator.id", ondelete="CASCADE"), index=True)
    assigned_s: Mapped[int] = mapped_column(BigInteger)


class ConnectionAgreement(Base):
    """How a site may use the network, as the operator sets it; the wire never shows it.

    The engine reads it and it wins over the network file's agreement for the site with this NMI
    (grid/agreement_records.py, docs/network-format.md).
    """

    __tablename__ = "connection_agreement"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), unique=True)
    kind: Mapped[AgreementKind] = mapped_column(_enum(AgreementKind, "agreement_kind"))
    max_export_w: Mapped[float | None] = mapped_column(Float)
    max_import_w: Mapped[float | None] = mapped_column(Float)
    export_limit_w: Mapped[float | None] = mapped_column(Float)
    import_limit_w: Mapped[float | None] = mapped_column(Float)
    export_floor_w: Mapped[float | None] = mapped_column(Float)
    import_floor_w: Mapped[float | None] = mapped_column(Float)
    staggered_until_s: Mapped[int | None] = mapped_column(BigInteger)
    staggered_export_w: Mapped[float | None] = mapped_column(Float)
    staggered_import_w: Mapped[float | None] = mapped_column(Float)
    #: scheduled agreements: up to 288 points (12 months x 24 hours) of {"month","hour","export_w","import_w"}
    schedule: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    queue_position: Mapped[int | None] = mapped_column(Integer)
    site: Mapped[Site] = relationship(back_populates="agreement")


class Der(Base):
    """One DER of a site and the four documents its client PUTs (capability, settings, status, avail.)."""

    __tablename__ = "der"
    __table_args__ = (UniqueConstraint("site_id", "der_index", name="uq_der_site_index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    der_index: Mapped[int] = mapped_column(Integer)
    #: The four documents are kept as the validated XML the client PUT, so GET returns exactly that;
    #: the few fields the engine reads are copied into typed columns.
    capability_xml: Mapped[str | None] = mapped_column(Text)
    capability_s: Mapped[int | None] = mapped_column(BigInteger)
    settings_xml: Mapped[str | None] = mapped_column(Text)
    settings_s: Mapped[int | None] = mapped_column(BigInteger)
    status_xml: Mapped[str | None] = mapped_column(Text)
    status_s: Mapped[int | None] = mapped_column(BigInteger)
    availability_xml: Mapped[str | None] = mapped_column(Text)
    availability_s: Mapped[int | None] = mapped_column(BigInteger)
    rtg_max_w: Mapped[float | None] = mapped_column(Float)
    set_max_w: Mapped[float | None] = mapped_column(Float)
    doe_modes_supported: Mapped[int | None] = mapped_column(Integer)
    doe_modes_enabled: Mapped[int | None] = mapped_column(Integer)
    site: Mapped[Site] = relationship(back_populates="ders")


class FunctionSetAssignments(Base):
    __tablename__ = "fsa"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(String(32), default="")
    changed_s: Mapped[int] = mapped_column(BigInteger)
    programs: Mapped[list[DerProgram]] = relationship(back_populates="fsa", order_by="DerProgram.primacy")


class DerProgram(Base):
    __tablename__ = "der_program"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fsa_id: Mapped[int] = mapped_column(ForeignKey("fsa.id", ondelete="CASCADE"))
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(String(32), default="")
    primacy: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=0)
    changed_s: Mapped[int] = mapped_column(BigInteger)
    fsa: Mapped[FunctionSetAssignments] = relationship(back_populates="programs")


class _ControlFields:
    """DERControlBase fields shared by scheduled and default controls. None means "not set".

    Typed columns for mypy; core.der_control_fields is the table they must match (checked below).
    """

    import_limit_w: Mapped[float | None] = mapped_column(Float)
    export_limit_w: Mapped[float | None] = mapped_column(Float)
    generation_limit_w: Mapped[float | None] = mapped_column(Float)
    load_limit_w: Mapped[float | None] = mapped_column(Float)
    connect: Mapped[bool | None] = mapped_column(Boolean)
    energize: Mapped[bool | None] = mapped_column(Boolean)
    fixed_w_pct_hundredths: Mapped[int | None] = mapped_column(Integer)
    max_w_pct_hundredths: Mapped[int | None] = mapped_column(Integer)
    ramp_tms_hundredths_s: Mapped[int | None] = mapped_column(Integer)


class DerControl(_ControlFields, Base):
    """A scheduled event for one site in one program; status is derived from the clock when read."""

    __tablename__ = "der_control"
    __table_args__ = (Index("ix_der_control_site_program_start", "site_id", "program_id", "start_s"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("der_program.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(32), default="")
    creation_s: Mapped[int] = mapped_column(BigInteger)
    start_s: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[int] = mapped_column(BigInteger)  # UInt32 on the wire
    randomize_start_s: Mapped[int | None] = mapped_column(Integer)
    randomize_duration_s: Mapped[int | None] = mapped_column(Integer)
    response_required: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_s: Mapped[int | None] = mapped_column(BigInteger)
    cancel_randomized: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=0)


class DefaultDerControl(_ControlFields, Base):
    """The fallback a device applies when it has no active control (one per program, per site or shared)."""

    __tablename__ = "default_der_control"
    __table_args__ = (UniqueConstraint("program_id", "site_id", name="uq_dderc_program_site"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("der_program.id", ondelete="CASCADE"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(32), default="")
    set_grad_w_hundredths: Mapped[int | None] = mapped_column(Integer)
    set_soft_grad_w_hundredths: Mapped[int | None] = mapped_column(Integer)
    es_delay_hundredths_s: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=0)
    changed_s: Mapped[int] = mapped_column(BigInteger)


class DerCurve(Base):
    __tablename__ = "der_curve"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("der_program.id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(32), default="")
    curve_type: Mapped[int] = mapped_column(Integer)  # 2030.5 DERCurveType: 11 volt-var, 12 volt-watt
    #: [[x, y], ...] in the units given by x/y multipliers and y_ref_type
    points: Mapped[list[list[int]]] = mapped_column(JSON)
    x_multiplier: Mapped[int] = mapped_column(Integer, default=0)
    y_multiplier: Mapped[int] = mapped_column(Integer, default=0)
    y_ref_type: Mapped[int] = mapped_column(Integer, default=3)
    creation_s: Mapped[int] = mapped_column(BigInteger)


class MirrorUsagePoint(Base):
    __tablename__ = "mirror_usage_point"
    __table_args__ = (UniqueConstraint("site_id", "mrid", name="uq_mup_site_mrid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    mrid: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(String(32))
    role_flags: Mapped[int] = mapped_column(Integer)
    service_category: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    post_rate_s: Mapped[int | None] = mapped_column(BigInteger)
    changed_s: Mapped[int] = mapped_column(BigInteger)
    meter_readings: Mapped[list[MirrorMeterReading]] = relationship(
        back_populates="mup", cascade="all, delete-orphan", order_by="MirrorMeterReading.id"
    )


class MirrorMeterReading(Base):
    __tablename__ = "mirror_meter_reading"
    __table_args__ = (
        UniqueConstraint("mup_id", "mrid", name="uq_mmr_mup_mrid"),
        # mRIDs are unique across devices: a new mirror asks whether any other holds its mRID
        Index("ix_mmr_mrid", "mrid"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mup_id: Mapped[int] = mapped_column(ForeignKey("mirror_usage_point.id", ondelete="CASCADE"))
    mrid: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(String(32))
    #: ReadingType fields as parsed (uom, kind, powerOfTenMultiplier, phase, ...)
    reading_type: Mapped[dict[str, Any]] = mapped_column(JSON)
    mup: Mapped[MirrorUsagePoint] = relationship(back_populates="meter_readings")


class TelemetryReading(Base):
    """One Reading value posted by a client, kept in the units it was sent (value x 10^multiplier)."""

    __tablename__ = "telemetry_reading"
    __table_args__ = (
        Index("ix_reading_mmr_time", "mmr_id", "time_s"),
        Index("ix_reading_received", "received_s"),  # freshness is judged by when the server received data
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mmr_id: Mapped[int] = mapped_column(ForeignKey("mirror_meter_reading.id", ondelete="CASCADE"))
    time_s: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[int | None] = mapped_column(BigInteger)
    value: Mapped[int] = mapped_column(BigInteger)
    power_of_ten: Mapped[int] = mapped_column(Integer, default=0)
    quality_flags: Mapped[int | None] = mapped_column(Integer)
    received_s: Mapped[int] = mapped_column(BigInteger)


class Response(Base):
    __tablename__ = "response"
    __table_args__ = (Index("ix_response_site", "site_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    control_id: Mapped[int | None] = mapped_column(ForeignKey("der_control.id", ondelete="SET NULL"))
    subject_mrid: Mapped[str] = mapped_column(String(32))
    status: Mapped[int] = mapped_column(Integer)
    created_s: Mapped[int] = mapped_column(BigInteger)
    received_s: Mapped[int] = mapped_column(BigInteger)


class Subscription(Base):
    """An aggregator's subscription to a list or resource, kept in the SubscriptionList of one EndDevice.

    `site_id` names that EndDevice (None: the aggregator's own `/edev/0`). `client_lfdi` is the certificate
    that subscribed: notifications render what it may see, and stop if it is revoked. `last_sha256` is the
    hash of the representation last queued, so only changes are sent and a restart resends nothing.
    `failed_s` marks a subscriber whose endpoint kept failing (cleared by a delivery or a renewal).
    `cancelled_s` is set when the server cancels it (its resource was deleted): it is gone for the
    client at once, and the row stays only until its final Notification (status 4) is sent.
    """

    __tablename__ = "subscription"
    __table_args__ = (Index("ix_subscription_aggregator", "aggregator_id", "site_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    aggregator_id: Mapped[int] = mapped_column(ForeignKey("aggregator.id", ondelete="CASCADE"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    client_lfdi: Mapped[str] = mapped_column(String(40))
    resource_href: Mapped[str] = mapped_column(String(255))
    notification_uri: Mapped[str] = mapped_column(String(1024))
    result_limit: Mapped[int] = mapped_column(BigInteger)  # UInt32 on the wire
    encoding: Mapped[int] = mapped_column(Integer, default=0)
    level: Mapped[str] = mapped_column(String(16), default="+S1")
    created_s: Mapped[int] = mapped_column(BigInteger)
    changed_s: Mapped[int] = mapped_column(BigInteger)
    last_sha256: Mapped[str | None] = mapped_column(String(64))
    failed_s: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(255))
    cancelled_s: Mapped[int | None] = mapped_column(BigInteger)


class NotificationOutbox(Base):
    """A Notification waiting to be POSTed (or the record of one that was): durable across restarts.

    A row is pending while `delivered_s` and `abandoned_s` are both unset; it is abandoned when a newer
    notification for the same subscription supersedes it or when `attempts` reaches the configured maximum.
    """

    __tablename__ = "notification_outbox"
    __table_args__ = (
        Index("ix_outbox_due", "delivered_s", "abandoned_s", "next_attempt_s"),
        Index("ix_outbox_subscription", "subscription_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_s: Mapped[int] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(255))
    delivered_s: Mapped[int | None] = mapped_column(BigInteger)
    abandoned_s: Mapped[int | None] = mapped_column(BigInteger)
    created_s: Mapped[int] = mapped_column(BigInteger)


class LogEvent(Base):
    __tablename__ = "log_event"
    __table_args__ = (Index("ix_log_event_site", "site_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    created_s: Mapped[int] = mapped_column(BigInteger)
    function_set: Mapped[int] = mapped_column(Integer)
    log_event_code: Mapped[int] = mapped_column(Integer)
    log_event_id: Mapped[int] = mapped_column(Integer)
    log_event_pen: Mapped[int] = mapped_column(BigInteger)
    profile_id: Mapped[int] = mapped_column(Integer)
    details: Mapped[str | None] = mapped_column(Text)
    extended_data: Mapped[int | None] = mapped_column(BigInteger)


class PublicationCounter(Base):
    """Change counters, bumped in the same transaction as the change they count.

    Row 1 (publication): anything a cached body or a client's scope depends on (registration, sites,
    certificates, programs, controls, envelopes, settings), so render caches know to refresh. Row 2
    (activity): a device's own reports (telemetry, Responses, LogEvents, DER documents), which no
    cached body depends on; the notifier watches both.
    """

    __tablename__ = "publication_counter"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ChangeVersion(Base):
    """One version per change key ("net:<name>", "site:<id>"): finer than the publication counter.

    Bumped by `store.change_feed.bump_change` for a change that concerns one network or site only, so
    caches of other networks stay valid; PostgreSQL triggers NOTIFY every bump (migration 0009).
    """

    __tablename__ = "change_version"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class NetworkModel(Base):
    """One version of a network file (docs/network-format.md) as loaded by an operator.

    A network is known by its name; its newest active row is its current version. Retiring a network
    deactivates its rows and stamps `retired_s` (store/publication/network_docs.py).
    """

    __tablename__ = "network_model"
    __table_args__ = (Index("ix_network_model_name_active", "name", "active"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    loaded_s: Mapped[int] = mapped_column(BigInteger)
    loaded_by: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    retired_s: Mapped[int | None] = mapped_column(BigInteger)


class AssetDerate(Base):
    """An operator's derate (factor < 1) or outage (factor 0) of a network asset, for a period.

    `network` names the network whose asset it is (asset names are unique only within a network);
    None is a row from before networks were named, applied wherever its asset exists.
    """

    __tablename__ = "asset_derate"
    __table_args__ = (Index("ix_asset_derate_network", "network"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network: Mapped[str | None] = mapped_column(String(64))
    asset: Mapped[str] = mapped_column(String(64))
    factor: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(200), default="")
    from_s: Mapped[int] = mapped_column(BigInteger)
    until_s: Mapped[int | None] = mapped_column(BigInteger)
    created_s: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(64))
    cleared_s: Mapped[int | None] = mapped_column(BigInteger)


class EnvelopeSetRecord(Base):
    """One recomputation: what was computed, whether it was published, and why not if it was not."""

    __tablename__ = "envelope_set"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("network_model.id", ondelete="SET NULL"))
    created_s: Mapped[int] = mapped_column(BigInteger)
    start_s: Mapped[int] = mapped_column(BigInteger)
    interval_s: Mapped[int] = mapped_column(Integer)
    n_intervals: Mapped[int] = mapped_column(Integer)
    program_id: Mapped[int | None] = mapped_column(ForeignKey("der_program.id", ondelete="SET NULL"))
    policy: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # published | skipped | failed
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class SiteEnvelope(Base):
    """One site's envelope blocks in one set (see store/envelope_blocks.py for the encoding)."""

    __tablename__ = "site_envelope"
    set_id: Mapped[int] = mapped_column(ForeignKey("envelope_set.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), primary_key=True)
    blocks: Mapped[bytes] = mapped_column(LargeBinary)


class EnvelopePointer(Base):
    """Which envelope set the devices of one network see. Switching it is the single write that
    publishes that network's new set; each network has its own, so networks publish independently."""

    __tablename__ = "envelope_pointer"
    __table_args__ = (Index("uq_envelope_pointer_network", "network", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network: Mapped[str | None] = mapped_column(String(64))
    set_id: Mapped[int | None] = mapped_column(ForeignKey("envelope_set.id", ondelete="SET NULL"))


class PublisherLease(Base):
    """The publisher's fencing epoch: bumped by each new holder of the publisher lock, checked by every
    publication (store/publication/lease.py), so a publisher that lost the lock can never publish again."""

    __tablename__ = "publisher_lease"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    acquired_s: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


check_attributes("store.models._ControlFields", set(_ControlFields.__annotations__), CONTROL_BASE_NAMES)
check_attributes(
    "store.models.DefaultDerControl",
    {name for name in DEFAULT_CONTROL_NAMES if hasattr(DefaultDerControl, name)},
    DEFAULT_CONTROL_NAMES,
)
