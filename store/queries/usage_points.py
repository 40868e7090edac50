"""The read side of metering: mirrored data as UsagePoints, MeterReadings, ReadingSets and Readings.

Everything starts from a MirrorUsagePoint found through the caller's ClientScope, so a device sees
only its own site's mirrors and an aggregator its sites'. List orders are IEEE 2030.5 §10.4.2
(Table 39): UsagePoint and MeterReading by mRID descending, ReadingSet by start descending. A reading
the client posted twice for the same interval (a retry) appears once, as the last one received.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from gridshare.store.models import MirrorMeterReading, MirrorUsagePoint, Site, TelemetryReading
from gridshare.store.scope import ClientScope

#: A ReadingSet is one UTC day of a MeterReading's readings.
DAY_S = 86400


def _visible_mups(scope: ClientScope) -> Select[MirrorUsagePoint]:
    return select(MirrorUsagePoint).join(Site, Site.id == MirrorUsagePoint.site_id).where(scope.site_filter())


def list_usage_points(
    session: Session, scope: ClientScope, *, start: int, limit: int
) -> tuple[int, list[MirrorUsagePoint]]:
    query = _visible_mups(scope)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    page = session.execute(
        query.order_by(MirrorUsagePoint.mrid.desc(), MirrorUsagePoint.id.desc()).offset(start).limit(limit)
    ).scalars()
    return int(total), list(page)


def get_usage_point(session: Session, scope: ClientScope, mup_id: int) -> MirrorUsagePoint | None:
    return session.execute(_visible_mups(scope).where(MirrorUsagePoint.id == mup_id)).scalar_one_or_none()


def list_meter_readings(
    session: Session, mup: MirrorUsagePoint, *, start: int, limit: int
) -> tuple[int, list[MirrorMeterReading]]:
    where = MirrorMeterReading.mup_id == mup.id
    total = session.execute(select(func.count(MirrorMeterReading.id)).where(where)).scalar_one()
    page = session.execute(
        select(MirrorMeterReading)
        .where(where)
        .order_by(MirrorMeterReading.mrid.desc(), MirrorMeterReading.id.desc())
        .offset(start)
        .limit(limit)
    ).scalars()
    return int(total), list(page)


def get_meter_reading(
    session: Session, scope: ClientScope, mup_id: int, mmr_id: int
) -> MirrorMeterReading | None:
    """A MirrorMeterReading of a MirrorUsagePoint the caller may see, or None."""
    return session.execute(
        select(MirrorMeterReading)
        .join(MirrorUsagePoint, MirrorUsagePoint.id == MirrorMeterReading.mup_id)
        .join(Site, Site.id == MirrorUsagePoint.site_id)
        .where(scope.site_filter(), MirrorUsagePoint.id == mup_id, MirrorMeterReading.id == mmr_id)
    ).scalar_one_or_none()


def _day() -> ColumnElement[int]:
    """Start of the UTC day a reading starts in (readings before 1970 are not shown)."""
    return TelemetryReading.time_s - TelemetryReading.time_s % DAY_S


def _days(mmr: MirrorMeterReading, after_s: int | None) -> Select[int]:
    day = _day().label("day")
    query = select(day).where(TelemetryReading.mmr_id == mmr.id, TelemetryReading.time_s >= 0)
    if after_s is not None:
        query = query.where(day >= after_s)
    return query.distinct()


def list_reading_days(
    session: Session, mmr: MirrorMeterReading, *, start: int, limit: int, after_s: int | None
) -> tuple[int, list[int]]:
    """Start of each UTC day holding readings, newest first (a page of them), and how many there are.

    One pass over the readings: the days themselves are few (one a day), so they are paged here.
    """
    day = _days(mmr, after_s).subquery().c.day
    days = [int(d) for d in session.execute(select(day).order_by(day.desc())).scalars()]
    return len(days), days[start : start + limit]


def _current_in_day(mmr: MirrorMeterReading, day_s: int) -> ColumnElement[bool]:
    """Readings of one day, the last one received for each interval."""
    window = (
        TelemetryReading.mmr_id == mmr.id,
        TelemetryReading.time_s >= day_s,
        TelemetryReading.time_s < day_s + DAY_S,
    )
    newest = (
        select(func.max(TelemetryReading.id))
        .where(*window)
        .group_by(TelemetryReading.time_s, TelemetryReading.duration_s)
    )
    return TelemetryReading.id.in_(newest)


def list_day_readings(
    session: Session,
    mmr: MirrorMeterReading,
    day_s: int,
    *,
    start: int,
    limit: int,
    after_s: int | None,
) -> tuple[int, list[TelemetryReading]]:
    """A page of one day's readings in time order (2030.5 orders by localID, which grows with time)."""
    query = select(TelemetryReading).where(_current_in_day(mmr, day_s))
    if after_s is not None:
        query = query.where(TelemetryReading.time_s >= after_s)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    page = session.execute(
        query.order_by(TelemetryReading.time_s, TelemetryReading.id).offset(start).limit(limit)
    ).scalars()
    return int(total), list(page)


def get_day_reading(
    session: Session, mmr: MirrorMeterReading, day_s: int, reading_id: int
) -> TelemetryReading | None:
    return session.execute(
        select(TelemetryReading).where(_current_in_day(mmr, day_s), TelemetryReading.id == reading_id)
    ).scalar_one_or_none()


def latest_reading(session: Session, mmr: MirrorMeterReading) -> TelemetryReading | None:
    """The reading with the latest start (the last one received, if several share it)."""
    return session.execute(
        select(TelemetryReading)
        .where(TelemetryReading.mmr_id == mmr.id, TelemetryReading.time_s >= 0)
        .order_by(TelemetryReading.time_s.desc(), TelemetryReading.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def count_meter_readings(session: Session, mup: MirrorUsagePoint) -> int:
    return int(
        session.execute(
            select(func.count(MirrorMeterReading.id)).where(MirrorMeterReading.mup_id == mup.id)
        ).scalar_one()
    )


def count_day_readings(session: Session, mmr: MirrorMeterReading, days: list[int]) -> dict[int, int]:
    """How many readings each of these days shows, in one query (for the ReadingListLinks of a page)."""
    if not days:
        return {}
    newest = (
        select(func.max(TelemetryReading.id))
        .where(
            TelemetryReading.mmr_id == mmr.id,
            TelemetryReading.time_s >= min(days),
            TelemetryReading.time_s < max(days) + DAY_S,
        )
        .group_by(TelemetryReading.time_s, TelemetryReading.duration_s)
    )
    day = _day().label("day")
    rows = session.execute(
        select(day, func.count()).where(TelemetryReading.id.in_(newest)).group_by(day)
    ).all()
    counts = {int(d): int(n) for d, n in rows}
    return {d: counts.get(d, 0) for d in days}
