"""Metering for readers: UsagePoint -> MeterReading -> ReadingType / Reading / ReadingSet -> Reading.

Read-only (GET and HEAD) views of mirrored data, scoped like everything else; built in
server/shared/metering_views.py. Lists take s/l/a: `a` keeps ReadingSets and Readings starting at or after it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from gridshare.server.shared import metering_views as views
from gridshare.server.shared.paging import Page, page
from gridshare.server.shared.request_unit import Id, read_unit, xml
from gridshare.server.wire import hrefs

router = APIRouter()
_READ = ["GET", "HEAD"]
Day = Annotated[int, Path(ge=0, le=10**12)]


@router.api_route(hrefs.UPT_LIST_T.path, methods=_READ)
def usage_point_list(request: Request, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        return xml(views.usage_point_list(u, p.start, p.limit))


@router.api_route(hrefs.UPT_T.path, methods=_READ)
def usage_point(request: Request, mup_id: Id) -> Response:
    with read_unit(request) as u:
        return xml(views.usage_point(u, mup_id))


@router.api_route(hrefs.METER_READING_LIST_T.path, methods=_READ)
def meter_reading_list(request: Request, mup_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        return xml(views.meter_reading_list(u, mup_id, p.start, p.limit))


@router.api_route(hrefs.METER_READING_T.path, methods=_READ)
def meter_reading(request: Request, mup_id: Id, mmr_id: Id) -> Response:
    with read_unit(request) as u:
        return xml(views.meter_reading(u, mup_id, mmr_id))


@router.api_route(hrefs.READING_TYPE_T.path, methods=_READ)
def reading_type(request: Request, mup_id: Id, mmr_id: Id) -> Response:
    with read_unit(request) as u:
        return xml(views.reading_type(u, mup_id, mmr_id))


@router.api_route(hrefs.LATEST_READING_T.path, methods=_READ)
def latest_reading(request: Request, mup_id: Id, mmr_id: Id) -> Response:
    with read_unit(request) as u:
        return xml(views.latest_reading(u, mup_id, mmr_id))


@router.api_route(hrefs.READING_SET_LIST_T.path, methods=_READ)
def reading_set_list(request: Request, mup_id: Id, mmr_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        return xml(views.reading_set_list(u, mup_id, mmr_id, p.start, p.limit, p.after_s))


@router.api_route(hrefs.READING_SET_T.path, methods=_READ)
def reading_set(request: Request, mup_id: Id, mmr_id: Id, day_s: Day) -> Response:
    with read_unit(request) as u:
        return xml(views.reading_set(u, mup_id, mmr_id, day_s))


@router.api_route(hrefs.READING_LIST_T.path, methods=_READ)
def reading_list(request: Request, mup_id: Id, mmr_id: Id, day_s: Day, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        return xml(views.reading_list(u, mup_id, mmr_id, day_s, p.start, p.limit, p.after_s))


@router.api_route(hrefs.READING_T.path, methods=_READ)
def reading(request: Request, mup_id: Id, mmr_id: Id, day_s: Day, reading_id: Id) -> Response:
    with read_unit(request) as u:
        return xml(views.reading(u, mup_id, mmr_id, day_s, reading_id))
