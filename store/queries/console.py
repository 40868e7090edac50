"""Reads for the operator console: contact times, limits in force, telemetry series, constraint reports.

Nothing here is client-scoped: these are operator reads (behind a bearer token or a console login),
never reachable from the device port.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from gridshare.envelopes.blocks import in_force
from gridshare.envelopes.constraint_series import ConstraintSeries
from gridshare.envelopes.headroom import Direction
from gridshare.store.access_models import ApiToken
from gridshare.store.console_models import ConsoleSession, ConstraintReportRecord, DeviceContact, LimitHistory
from gridshare.store.constraint_blobs import decode_series
from gridshare.store.envelope_blocks import decode_envelope
from gridshare.store.models import (
    EnvelopePointer,
    EnvelopeSetRecord,
    MirrorMeterReading,
    MirrorUsagePoint,
    SiteEnvelope,
    TelemetryReading,
)

#: 2030.5 ReadingType: uom 38 is watts; flowDirection 1 forward (import), 19 reverse (export).
UOM_W, FORWARD, REVERSE = 38, 1, 19

#: (start, end, export W, import W, known since, fallback)
Span = tuple[int, int, float, float, int, bool]


def contacts(session: Session, site_ids: Iterable[int] | None = None) -> dict[int, DeviceContact]:
    query = select(DeviceContact)
    if site_ids is not None:
        query = query.where(DeviceContact.site_id.in_(list(site_ids)))
    return {c.site_id: c for c in session.execute(query).scalars()}


def current_set(session: Session, network: str) -> EnvelopeSetRecord | None:
    """The set the devices of `network` see now."""
    return session.execute(
        select(EnvelopeSetRecord)
        .join(EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id)
        .where(EnvelopePointer.network == network)
    ).scalar_one_or_none()


def current_blocks(session: Session, site_id: int) -> tuple[EnvelopeSetRecord, np.ndarray] | None:
    """The current set and this site's blocks in it (None: nothing published for the site)."""
    found = session.execute(
        select(EnvelopeSetRecord, SiteEnvelope.blocks)
        .join(EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id)
        .join(SiteEnvelope, SiteEnvelope.set_id == EnvelopeSetRecord.id)
        .where(SiteEnvelope.site_id == site_id)
        .order_by(EnvelopeSetRecord.created_s.desc())
        .limit(1)
    ).first()
    if found is None:
        return None
    record, blob = found
    return record, decode_envelope(blob)[0]


def is_fallback(record: EnvelopeSetRecord, site_id: int) -> bool:
    detail = record.detail or {}
    only = detail.get("fallback_site_ids")
    return bool(detail.get("fallback")) and (only is None or site_id in only)


def limit_spans(session: Session, site_id: int, from_s: int, until_s: int) -> list[Span]:
    """The limits this site had (or has, or will have) in force over [from_s, until_s).

    History rows for what replaced sets had in force, then the current set from its publication on
    (its future blocks included). Where none applies the site was on its DefaultDERControl.
    """
    rows = session.execute(
        select(
            LimitHistory.start_s,
            LimitHistory.end_s,
            LimitHistory.export_limit_w,
            LimitHistory.import_limit_w,
            LimitHistory.published_s,
            LimitHistory.fallback,
        )
        .where(LimitHistory.site_id == site_id, LimitHistory.end_s > from_s, LimitHistory.start_s < until_s)
        .order_by(LimitHistory.start_s, LimitHistory.id)
    ).all()
    spans: list[Span] = [(int(a), int(b), float(e), float(i), int(k), bool(f)) for a, b, e, i, k, f in rows]
    now = current_blocks(session, site_id)
    if now is not None:
        record, blocks = now
        fallback = is_fallback(record, site_id)
        for b in in_force(blocks, max(from_s, record.created_s), until_s):
            end = int(b["start"] + b["duration"])
            spans.append(
                (
                    int(b["start"]),
                    end,
                    float(b["export_w"]),
                    float(b["import_w"]),
                    int(b["created"]),
                    fallback,
                )
            )
    return spans


@dataclass(frozen=True)
class PowerSeries:
    """Net export at the connection point (W, import negative) at each reading time."""

    t_s: np.ndarray
    export_w: np.ndarray
    last_received_s: int | None


def net_power(session: Session, site_id: int, from_s: int, until_s: int) -> PowerSeries:
    """Real-power readings of the site's MirrorUsagePoints, forward minus reverse, summed per time."""
    rows = session.execute(
        select(
            MirrorMeterReading.reading_type,
            TelemetryReading.time_s,
            TelemetryReading.value,
            TelemetryReading.power_of_ten,
            TelemetryReading.received_s,
        )
        .join(MirrorUsagePoint, MirrorMeterReading.mup_id == MirrorUsagePoint.id)
        .join(TelemetryReading, TelemetryReading.mmr_id == MirrorMeterReading.id)
        .where(
            MirrorUsagePoint.site_id == site_id,
            TelemetryReading.time_s >= from_s,
            TelemetryReading.time_s < until_s,
        )
        .order_by(TelemetryReading.time_s)
    ).all()
    by_time: dict[int, float] = {}
    last: int | None = None
    for reading_type, time_s, value, power_of_ten, received_s in rows:
        if not isinstance(reading_type, dict) or reading_type.get("uom") != UOM_W:
            continue
        direction = reading_type.get("flowDirection")
        watts = float(value) * 10.0 ** int(power_of_ten)
        if direction == REVERSE:
            by_time[int(time_s)] = by_time.get(int(time_s), 0.0) + watts
        elif direction == FORWARD:
            by_time[int(time_s)] = by_time.get(int(time_s), 0.0) - watts
        else:
            continue
        last = max(last or 0, int(received_s))
    times = np.array(sorted(by_time), dtype=np.int64)
    return PowerSeries(times, np.array([by_time[int(t)] for t in times], dtype=float), last)


def sites_with_telemetry(session: Session, since_s: int) -> set[int]:
    rows = session.execute(
        select(MirrorUsagePoint.site_id)
        .join(MirrorMeterReading, MirrorMeterReading.mup_id == MirrorUsagePoint.id)
        .join(TelemetryReading, TelemetryReading.mmr_id == MirrorMeterReading.id)
        .where(TelemetryReading.time_s >= since_s)
        .distinct()
    ).scalars()
    return {int(x) for x in rows}


@dataclass(frozen=True)
class StoredReport:
    set_id: int
    created_s: int
    start_s: int
    interval_s: int
    network_id: int | None
    fallback: bool
    series: dict[Direction, ConstraintSeries]


def latest_report(session: Session, network_id: int | None = None) -> StoredReport | None:
    """The newest constraint report (of the given network version, if named)."""
    query = (
        select(EnvelopeSetRecord, ConstraintReportRecord.report)
        .join(ConstraintReportRecord, ConstraintReportRecord.set_id == EnvelopeSetRecord.id)
        .order_by(EnvelopeSetRecord.id.desc())
        .limit(1)
    )
    if network_id is not None:
        query = query.where(EnvelopeSetRecord.network_id == network_id)
    found = session.execute(query).first()
    if found is None:
        return None
    record, blob = found
    return StoredReport(
        set_id=record.id,
        created_s=record.created_s,
        start_s=record.start_s,
        interval_s=record.interval_s,
        network_id=record.network_id,
        fallback=bool((record.detail or {}).get("fallback")),
        series=decode_series(blob),
    )


def set_counts(session: Session) -> list[tuple[int | None, str, int]]:
    """(network id, status, count) over every recomputation recorded."""
    rows = session.execute(
        select(
            EnvelopeSetRecord.network_id, EnvelopeSetRecord.status, func.count(EnvelopeSetRecord.id)
        ).group_by(EnvelopeSetRecord.network_id, EnvelopeSetRecord.status)
    ).all()
    return [(n, str(s), int(c)) for n, s, c in rows]


# --- console sessions ----------------------------------------------------------------------------------


def add_console_session(
    session: Session, *, session_sha256: str, token_id: int, csrf: str, now_s: int, lifetime_s: int
) -> ConsoleSession:
    row = ConsoleSession(
        session_sha256=session_sha256,
        token_id=token_id,
        csrf=csrf,
        created_s=now_s,
        expires_s=now_s + lifetime_s,
    )
    session.add(row)
    session.flush()
    return row


def live_console_session(
    session: Session, session_sha256: str, now_s: int
) -> tuple[ConsoleSession, ApiToken] | None:
    """The login and its token, if neither has ended, expired or been revoked."""
    found = session.execute(
        select(ConsoleSession, ApiToken)
        .join(ApiToken, ApiToken.id == ConsoleSession.token_id)
        .where(ConsoleSession.session_sha256 == session_sha256)
    ).first()
    if found is None:
        return None
    row, token = found
    if row.ended_s is not None or row.expires_s <= now_s or token.revoked_s is not None:
        return None
    return row, token


def end_console_session(session: Session, session_sha256: str, now_s: int) -> None:
    row = session.execute(
        select(ConsoleSession).where(ConsoleSession.session_sha256 == session_sha256)
    ).scalar_one_or_none()
    if row is not None and row.ended_s is None:
        row.ended_s = now_s
    # Logins long over are of no use to anyone: keep the table small.
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_s < now_s - 7 * 86400))
