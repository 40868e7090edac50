"""MirrorUsagePoints: clients mirror their meter and inverter readings here (telemetry)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from gridshare.server.shared import reports
from gridshare.server.shared.batched_writes import commit_report
from gridshare.server.shared.device_time import check_device_time
from gridshare.server.shared.paging import Page, page
from gridshare.server.shared.request_unit import (
    Id,
    Unit,
    created,
    publishes_nothing,
    read_unit,
    read_xml,
    store_work,
    write_unit,
    xml,
)
from gridshare.server.wire import decode, encode, encode_metering, hrefs
from gridshare.store.change_feed import site_key
from gridshare.store.models import MirrorMeterReading, MirrorUsagePoint, Site, TelemetryReading
from gridshare.store.queries import metering as q
from gridshare.store.queries.runtime_settings import MUP_POST_RATE_KEY, get_setting
from gridshare.store.queries.sites import site_by_lfdi

router = APIRouter()


def _site_of(u: Unit, mup: MirrorUsagePoint) -> Site:
    site = u.session.get(Site, mup.site_id)
    assert site is not None  # site_id is a non-null foreign key, ON DELETE CASCADE
    return site


@router.api_route(hrefs.MUP_LIST_T.path, methods=["GET", "HEAD"])
def mup_list(request: Request, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        u.depends_on_visible_sites()  # mirrors change with device reports (migration 0010 bumps)
        u.cacheable()
        total, mups = q.list_mups(u.session, u.scope, start=p.start, limit=p.limit)
        el = encode.list_root("MirrorUsagePointList", hrefs.MUP_LIST, total, len(mups), u.poll_rate("mup"))
        for mup in mups:
            encode_metering.mirror_usage_point(el, mup, _site_of(u, mup), u.ctx.settings.mup_post_rate_s)
        return xml(el)


@router.api_route(hrefs.MUP_T.path, methods=["GET", "HEAD"])
def mup(request: Request, mup_id: Id) -> Response:
    with read_unit(request) as u:
        u.depends_on_visible_sites()
        u.cacheable()
        found = q.get_mup(u.session, u.scope, mup_id)
        if found is None:
            raise HTTPException(404, "no such MirrorUsagePoint")
        return xml(
            encode_metering.mirror_usage_point(
                None, found, _site_of(u, found), u.ctx.settings.mup_post_rate_s
            )
        )


@router.post(hrefs.MUP_LIST_T.path)
async def create_mup(request: Request) -> Response:
    """Create a MirrorUsagePoint for one of the caller's sites, or update the one with the same mRID."""
    body = decode.mirror_usage_point(await read_xml(request, "MirrorUsagePoint"))
    # Every device re-posts its mirror at each discovery: its round trips (PostgreSQL) or a wait for
    # SQLite's write lock must never stall the event loop (store_work).
    return await store_work(request, _store_mup, body)


def _store_mup(request: Request, body: decode.MirrorUsagePointIn) -> Response:
    with write_unit(request, publishes=False) as u:
        site = site_by_lfdi(u.session, u.scope, body.device_lfdi)
        if site is None:
            raise HTTPException(400, "deviceLFDI is not an EndDevice registered by this client")
        u.depends_on(site_key(site.id))  # the mirror and its readings move this key (migration 0010)
        found = q.mup_by_mrid(u.session, site, body.mrid)
        if found is None:
            # a post rate the operator set at run time applies to new MirrorUsagePoints too
            found = MirrorUsagePoint(
                site_id=site.id, mrid=body.mrid, post_rate_s=get_setting(u.session, MUP_POST_RATE_KEY)
            )
            u.session.add(found)
        fields = reports.mirror_fields(body)
        # Only a real change touches the row: a device re-posting its mirror (every discovery) would
        # otherwise bump its site's change key and re-render its DeviceCapability and mirror lists.
        changed = found.id is None or fields != (
            found.description,
            found.role_flags,
            found.service_category,
            found.status,
        )
        if changed:
            found.description, found.role_flags, found.service_category, found.status = fields
            found.changed_s = u.now_s()
        u.session.flush()
        if not _store_readings(u, found, body.meter_readings) and not changed:
            publishes_nothing(request)  # the same mirror again, with readings at most
            # The next re-post from this client is checked against this in the raw-ASGI front
            # (server/shared/fast_reports.py) until the mirror, its site or the client's access change.
            known = q.visible_meter_readings(u.session, u.scope, found.id)
            if known is not None:
                u.remember(
                    reports.mirror_key(body.device_lfdi, body.mrid),
                    reports.MirrorCheck(found.id, fields, known),
                )
        return created(hrefs.mup(found.id))


@router.post(hrefs.MUP_T.path)
async def post_readings(request: Request, mup_id: Id) -> Response:
    """Readings for an existing MirrorUsagePoint (a MirrorMeterReading or a MirrorMeterReadingList).

    The steady state (every MirrorMeterReading exists as sent) is usually answered by the raw-ASGI
    front from a remembered check (server/shared/fast_reports.py); this route checks against the store,
    remembers the check for the front, and stores the report the same way.
    """
    readings = decode.meter_readings(await read_xml(request, "MirrorMeterReading", "MirrorMeterReadingList"))
    # Never waiting on the event loop, which serves every other device's connection (store_work).
    rows = await store_work(request, _checked_rows, mup_id, readings)
    if rows is None:
        return await store_work(request, _store_in_own_transaction, mup_id, readings)
    await commit_report(request, reports.readings_insert(rows))
    return created(hrefs.mup(mup_id))


def _checked_rows(
    request: Request, mup_id: int, readings: list[decode.MeterReadingIn]
) -> list[dict[str, int | None]] | None:
    with read_unit(request) as u:
        site_id = q.visible_mup_site_id(u.session, u.scope, mup_id)
        if site_id is None:
            raise HTTPException(404, "no such MirrorUsagePoint")
        # The mirror's MirrorMeterReadings change only with its site's key (migration 0010's triggers);
        # access and registration with the generation: both read before the readings are.
        u.depends_on(site_key(site_id))
        known = q.visible_meter_readings(u.session, u.scope, mup_id)
        if known is None:
            raise HTTPException(404, "no such MirrorUsagePoint")
        u.remember(reports.reading_key(mup_id), known)
        return reports.reading_rows(known, readings, u.now_s(), u.ctx.settings)


def _store_in_own_transaction(
    request: Request, mup_id: int, readings: list[decode.MeterReadingIn]
) -> Response:
    with write_unit(request, publishes=False) as u:
        found = q.get_mup(u.session, u.scope, mup_id)
        if found is None:
            raise HTTPException(404, "no such MirrorUsagePoint")
        _store_readings(u, found, readings)
        return created(hrefs.mup(found.id))


@router.delete(hrefs.MUP_T.path)
def delete_mup(request: Request, mup_id: Id) -> Response:
    with write_unit(request, publishes=False) as u:
        found = q.get_mup(u.session, u.scope, mup_id)
        if found is None:
            raise HTTPException(404, "no such MirrorUsagePoint")
        q.delete_mup(u.session, found)
    return Response(status_code=204)


def _store_readings(u: Unit, mup: MirrorUsagePoint, readings: list[decode.MeterReadingIn]) -> bool:
    """Store the readings; True if that created or retyped a MirrorMeterReading (its site's key moves)."""
    now_s = u.now_s()
    mirrors_changed = False
    for incoming in readings:
        for r in incoming.readings:
            check_device_time(
                f"MirrorMeterReading {incoming.mrid} {r.time_field}", r.time_s, now_s, u.ctx.settings
            )
        mmr = q.meter_reading(u.session, mup, incoming.mrid)
        if mmr is None:
            if not incoming.reading_type:
                raise HTTPException(400, f"MirrorMeterReading {incoming.mrid} is new and needs a ReadingType")
            if q.meter_reading_mrid_taken(u.session, mup, incoming.mrid):
                raise HTTPException(409, f"MirrorMeterReading mRID {incoming.mrid} belongs to another mirror")
            mmr = MirrorMeterReading(
                mup_id=mup.id,
                mrid=incoming.mrid,
                description=incoming.description,
                reading_type=incoming.reading_type,
            )
            u.session.add(mmr)
            u.session.flush()
            mirrors_changed = True
        elif incoming.reading_type and incoming.reading_type != mmr.reading_type:
            mmr.reading_type = incoming.reading_type  # unchanged, it is not written (see create_mup)
            mirrors_changed = True
        power_of_ten = int(mmr.reading_type.get("powerOfTenMultiplier", 0))
        u.session.add_all(
            TelemetryReading(
                mmr_id=mmr.id,
                time_s=r.time_s,
                duration_s=r.duration_s,
                value=r.value,
                power_of_ten=power_of_ten,
                quality_flags=r.quality_flags,
                received_s=now_s,
            )
            for r in incoming.readings
        )
    return mirrors_changed
