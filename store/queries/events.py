"""Responses to DERControls and device log events, scoped to the client's sites."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridshare.store.models import DerControl, LogEvent, Response, Site
from gridshare.store.queries.paging import page_of
from gridshare.store.scope import ClientScope


def visible_control_by_mrid(session: Session, scope: ClientScope, mrid: str) -> DerControl | None:
    return session.execute(
        select(DerControl)
        .join(Site, Site.id == DerControl.site_id)
        .where(scope.site_filter(), DerControl.mrid == mrid)
    ).scalar_one_or_none()


def list_responses(
    session: Session, scope: ClientScope, *, start: int, limit: int, after_s: int | None
) -> tuple[int, list[tuple[Response, Site]]]:
    query = select(Response, Site).join(Site, Site.id == Response.site_id).where(scope.site_filter())
    if after_s is not None:
        query = query.where(Response.created_s >= after_s)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(
        query.order_by(Response.created_s.desc(), Response.id.desc()).offset(start).limit(limit)
    ).all()
    return int(total), [(r, s) for r, s in rows]


def get_response(session: Session, scope: ClientScope, response_id: int) -> tuple[Response, Site] | None:
    row = session.execute(
        select(Response, Site)
        .join(Site, Site.id == Response.site_id)
        .where(scope.site_filter(), Response.id == response_id)
    ).first()
    return None if row is None else (row[0], row[1])


def list_log_events(
    session: Session, site: Site, *, start: int, limit: int, after_s: int | None
) -> tuple[int, list[LogEvent]]:
    query = select(LogEvent).where(LogEvent.site_id == site.id)
    if after_s is not None:
        query = query.where(LogEvent.created_s >= after_s)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    page = (
        session.execute(
            query.order_by(LogEvent.created_s.desc(), LogEvent.id.desc()).offset(start).limit(limit)
        )
        .scalars()
        .all()
    )
    return int(total), list(page)


def get_log_event(session: Session, site: Site, event_id: int) -> LogEvent | None:
    return session.execute(
        select(LogEvent).where(LogEvent.site_id == site.id, LogEvent.id == event_id)
    ).scalar_one_or_none()


# --- operator API (unscoped: an operator sees every site) ---


def responses_page(session: Session, *, site_id: int, start: int, limit: int) -> tuple[int, list[Response]]:
    query = (
        select(Response)
        .where(Response.site_id == site_id)
        .order_by(Response.created_s.desc(), Response.id.desc())
    )
    return page_of(session, query, start=start, limit=limit)
