"""Read-only views of what devices sent: telemetry readings, Responses to controls, LogEvents."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.schemas import MAX_EPOCH_S, LogEventOut, Page, ResponseOut, TelemetryOut
from gridshare.store.models import Site
from gridshare.store.queries.events import list_log_events, responses_page
from gridshare.store.queries.metering import telemetry_page

router = APIRouter(tags=["device data"])


@router.get("/sites/{site_id}/telemetry", response_model=Page[TelemetryOut])
def site_telemetry(
    site_id: Id,
    session: Session = Depends(read_session),
    p: Paging = Depends(paging),
    since_s: int = Query(0, ge=0, le=MAX_EPOCH_S, description="only readings at or after this time"),
) -> Page:
    """Readings posted to the site's MirrorUsagePoints, newest first, in the units they were sent."""
    site = found(session.get(Site, site_id), "site")
    total, rows = telemetry_page(session, site_id=site.id, since_s=since_s, start=p.start, limit=p.limit)
    items = [
        TelemetryOut(
            id=r.id,
            mup_id=mup.id,
            mup_mrid=mup.mrid,
            reading_mrid=mmr.mrid,
            reading_description=mmr.description,
            reading_type=mmr.reading_type,
            time_s=r.time_s,
            duration_s=r.duration_s,
            value=r.value,
            power_of_ten=r.power_of_ten,
            scaled_value=r.value * 10.0**r.power_of_ten,
            quality_flags=r.quality_flags,
            received_s=r.received_s,
        )
        for r, mmr, mup in rows
    ]
    return Page(total=total, start=p.start, items=items)


@router.get("/sites/{site_id}/responses", response_model=Page[ResponseOut])
def site_responses(
    site_id: Id, session: Session = Depends(read_session), p: Paging = Depends(paging)
) -> Page:
    site = found(session.get(Site, site_id), "site")
    total, rows = responses_page(session, site_id=site.id, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[ResponseOut.model_validate(r) for r in rows])


@router.get("/sites/{site_id}/log-events", response_model=Page[LogEventOut])
def site_log_events(
    site_id: Id, session: Session = Depends(read_session), p: Paging = Depends(paging)
) -> Page:
    site = found(session.get(Site, site_id), "site")
    total, rows = list_log_events(session, site, start=p.start, limit=p.limit, after_s=None)
    return Page(total=total, start=p.start, items=[LogEventOut.model_validate(r) for r in rows])
