"""Responses to DERControls (POSTed to replyTo) and device LogEvents."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from gridshare.server.shared import reports
from gridshare.server.shared.batched_writes import commit_report
from gridshare.server.shared.paging import Page, page
from gridshare.server.shared.request_unit import (
    Id,
    context,
    created,
    read_unit,
    read_xml,
    store_work,
    write_unit,
    xml,
)
from gridshare.server.wire import decode, encode, hrefs
from gridshare.store.change_feed import site_key
from gridshare.store.models import LogEvent
from gridshare.store.queries import events as q
from gridshare.store.queries.envelopes import envelope_control_by_mrid
from gridshare.store.queries.sites import site_by_lfdi

router = APIRouter()


@router.post(hrefs.RESPONSE_LIST_T.path)
async def post_response(request: Request) -> Response:
    """A device's Response to a DERControl; usually answered by the raw-ASGI front once checked here
    (server/shared/fast_reports.py), which remembers the subject's check."""
    body = decode.response(await read_xml(request, "Response", "DERControlResponse"))
    if body.status is None or body.status not in reports.KNOWN_RESPONSE_STATUS:
        raise HTTPException(400, "Response.status is missing or not a DERControl response status")
    subject = await store_work(request, _checked_subject, body)
    fields = reports.response_fields(subject, body, context(request).now_s())
    # Checked above, so only the insert waits for the report writer's next commit.
    (inserted,) = await commit_report(request, reports.response_insert(fields))
    return created(hrefs.response(int(inserted)))


def _checked_subject(request: Request, body: decode.ResponseIn) -> reports.ResponseSubject:
    """The Response's device and subject, checked against the caller's scope (and remembered)."""
    with read_unit(request) as u:
        site = site_by_lfdi(u.session, u.scope, body.end_device_lfdi)
        if site is None:
            raise HTTPException(400, "endDeviceLFDI is not an EndDevice of this client")
        # Operator controls change with the site's key or the generation, envelope blocks with the
        # site's envelope and its network's key: read before the controls are.
        u.depends_on(site_key(site.id))
        u.depends_on_envelope(site.id)
        control = q.visible_control_by_mrid(u.session, u.scope, body.subject_mrid)
        if control is not None and control.site_id != site.id:
            control = None
        envelope_block = envelope_control_by_mrid(u.session, site, body.subject_mrid, u.ctx.settings.pen)
        if control is None and envelope_block is None:
            raise HTTPException(400, "subject is not a DERControl sent to this EndDevice")
        subject = reports.ResponseSubject(site.id, control.id if control is not None else None)
        u.remember(reports.response_key(body.end_device_lfdi, body.subject_mrid), subject)
        return subject


@router.api_route(hrefs.RESPONSE_LIST_T.path, methods=["GET", "HEAD"])
def response_list(request: Request, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        total, rows = q.list_responses(u.session, u.scope, start=p.start, limit=p.limit, after_s=p.after_s)
        el = encode.list_root("ResponseList", hrefs.DERC_RESPONSES, total, len(rows))
        for r, site in rows:
            encode.response(el, r, site)
        return xml(el)


@router.api_route(hrefs.RESPONSE_T.path, methods=["GET", "HEAD"])
def response(request: Request, response_id: Id) -> Response:
    with read_unit(request) as u:
        found = q.get_response(u.session, u.scope, response_id)
        if found is None:
            raise HTTPException(404, "no such Response")
        return xml(encode.response(None, *found))


@router.api_route(hrefs.LOG_EVENT_LIST_T.path, methods=["GET", "HEAD"])
def log_event_list(request: Request, site_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        site = u.site(site_id)
        total, events = q.list_log_events(u.session, site, start=p.start, limit=p.limit, after_s=p.after_s)
        el = encode.list_root(
            "LogEventList",
            hrefs.log_event_list(site_id),
            total,
            len(events),
            u.poll_rate("edev"),
            subscribable=0,
        )
        for e in events:
            encode.log_event(el, e)
        return xml(el)


@router.api_route(hrefs.LOG_EVENT_T.path, methods=["GET", "HEAD"])
def log_event(request: Request, site_id: Id, event_id: Id) -> Response:
    with read_unit(request) as u:
        found = q.get_log_event(u.session, u.site(site_id), event_id)
        if found is None:
            raise HTTPException(404, "no such LogEvent")
        return xml(encode.log_event(None, found))


@router.post(hrefs.LOG_EVENT_LIST_T.path)
async def post_log_event(request: Request, site_id: Id) -> Response:
    body = decode.log_event(await read_xml(request, "LogEvent"))
    return await store_work(request, _store_log_event, site_id, body)


def _store_log_event(request: Request, site_id: int, body: decode.LogEventIn) -> Response:
    with write_unit(request, publishes=False) as u:
        site = u.site(site_id)
        row = LogEvent(
            site_id=site.id,
            created_s=body.created_s,
            function_set=body.function_set,
            log_event_code=body.log_event_code,
            log_event_id=body.log_event_id,
            log_event_pen=body.log_event_pen,
            profile_id=body.profile_id,
            details=body.details,
            extended_data=body.extended_data,
        )
        u.session.add(row)
        u.session.flush()
        return created(hrefs.log_event(site.id, row.id))
