"""MirrorUsagePoints and the telemetry readings posted to them, scoped to the client's sites."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from gridshare.store.models import MirrorMeterReading, MirrorUsagePoint, Site, TelemetryReading
from gridshare.store.scope import ClientScope


def _visible(scope: ClientScope) -> Select[MirrorUsagePoint]:
    return select(MirrorUsagePoint).join(Site, Site.id == MirrorUsagePoint.site_id).where(scope.site_filter())


def count_mups(session: Session, scope: ClientScope) -> int:
    return int(session.execute(select(func.count()).select_from(_visible(scope).subquery())).scalar_one())


def list_mups(
    session: Session, scope: ClientScope, *, start: int, limit: int
) -> tuple[int, list[MirrorUsagePoint]]:
    total = count_mups(session, scope)
    page = (
        session.execute(_visible(scope).order_by(MirrorUsagePoint.id).offset(start).limit(limit))
        .scalars()
        .all()
    )
    return total, list(page)


def get_mup(session: Session, scope: ClientScope, mup_id: int) -> MirrorUsagePoint | None:
    return session.execute(_visible(scope).where(MirrorUsagePoint.id == mup_id)).scalar_one_or_none()


def visible_mup_site_id(session: Session, scope: ClientScope, mup_id: int) -> int | None:
    """The site a mirror the client may see belongs to (it never changes: a mirror is its site's)."""
    return session.execute(
        select(MirrorUsagePoint.site_id)
        .join(Site, Site.id == MirrorUsagePoint.site_id)
        .where(scope.site_filter(), MirrorUsagePoint.id == mup_id)
    ).scalar_one_or_none()


def visible_meter_readings(
    session: Session, scope: ClientScope, mup_id: int
) -> dict[str, tuple[int, dict[str, Any]]] | None:
    """mRID -> (id, ReadingType) of each MirrorMeterReading of a mirror the client may see; None if not.

    One query and no ORM objects: it runs for every report a fleet posts (`get_mup` then
    `meter_reading` per reading were two queries and an entity load each).
    """
    rows = session.execute(
        select(
            MirrorUsagePoint.id,
            MirrorMeterReading.id,
            MirrorMeterReading.mrid,
            MirrorMeterReading.reading_type,
        )
        .join(Site, Site.id == MirrorUsagePoint.site_id)
        .outerjoin(MirrorMeterReading, MirrorMeterReading.mup_id == MirrorUsagePoint.id)
        .where(scope.site_filter(), MirrorUsagePoint.id == mup_id)
    ).all()
    if not rows:
        return None
    return {mrid: (mmr_id, reading_type) for _, mmr_id, mrid, reading_type in rows if mmr_id is not None}


def mup_by_mrid(session: Session, site: Site, mrid: str) -> MirrorUsagePoint | None:
    return session.execute(
        select(MirrorUsagePoint).where(MirrorUsagePoint.site_id == site.id, MirrorUsagePoint.mrid == mrid)
    ).scalar_one_or_none()


def meter_reading(session: Session, mup: MirrorUsagePoint, mrid: str) -> MirrorMeterReading | None:
    return session.execute(
        select(MirrorMeterReading).where(MirrorMeterReading.mup_id == mup.id, MirrorMeterReading.mrid == mrid)
    ).scalar_one_or_none()


def meter_reading_mrid_taken(session: Session, mup: MirrorUsagePoint, mrid: str) -> bool:
    """Whether another MirrorUsagePoint (of any site) already has a MirrorMeterReading with this mRID.

    mRIDs are globally unique, so a second device claiming one is refused rather than merged.
    """
    return session.execute(mrid_taken_query(mup.id, mrid)).first() is not None


def mrid_taken_query(mup_id: int, mrid: str) -> Select[int]:
    """`meter_reading_mrid_taken`'s lookup: one entry of `ix_mmr_mrid`, not a read of every mirror."""
    return (
        select(MirrorMeterReading.id)
        .where(MirrorMeterReading.mrid == mrid, MirrorMeterReading.mup_id != mup_id)
        .limit(1)
    )


def delete_mup(session: Session, mup: MirrorUsagePoint) -> None:
    session.delete(mup)


# --- operator API (unscoped: an operator sees every site) ---


def telemetry_page(
    session: Session, *, site_id: int, since_s: int, start: int, limit: int
) -> tuple[int, list[tuple[TelemetryReading, MirrorMeterReading, MirrorUsagePoint]]]:
    """Readings of one site, newest first, with the meter reading and usage point they were posted to."""
    query = (
        select(TelemetryReading, MirrorMeterReading, MirrorUsagePoint)
        .join(MirrorMeterReading, MirrorMeterReading.id == TelemetryReading.mmr_id)
        .join(MirrorUsagePoint, MirrorUsagePoint.id == MirrorMeterReading.mup_id)
        .where(MirrorUsagePoint.site_id == site_id, TelemetryReading.time_s >= since_s)
    )
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(
        query.order_by(TelemetryReading.time_s.desc(), TelemetryReading.id.desc()).offset(start).limit(limit)
    ).all()
    return int(total), [(r, m, u) for r, m, u in rows]
