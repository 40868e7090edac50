"""The Metering function set (IEEE 2030.5 §10.4) as read-only views of what clients mirror (§10.11).

A MirrorUsagePoint /mup/{n} is read back as the UsagePoint /upt/{n} (roleFlags with isMirror set), each
of its MirrorMeterReadings as a MeterReading with its ReadingType, its newest Reading (ReadingLink, one
stable href) and its ReadingSets: one per UTC day that holds readings, newest first, each with its
ReadingList in time order. Routes and the notifier build the same documents here, so a Notification
carries exactly what a GET returns.
"""

from __future__ import annotations

from fastapi import HTTPException
from lxml import etree

from gridshare.core.mrid import derived_mrid
from gridshare.server.shared.request_unit import Unit
from gridshare.server.wire import encode, encode_metering, hrefs
from gridshare.store.models import MirrorMeterReading, MirrorUsagePoint, Site
from gridshare.store.queries import usage_points as q


def _mup(u: Unit, mup_id: int) -> MirrorUsagePoint:
    found = q.get_usage_point(u.session, u.scope, mup_id)
    if found is None:
        raise HTTPException(404, "no such UsagePoint")
    return found


def _mmr(u: Unit, mup_id: int, mmr_id: int) -> MirrorMeterReading:
    found = q.get_meter_reading(u.session, u.scope, mup_id, mmr_id)
    if found is None:
        raise HTTPException(404, "no such MeterReading")
    return found


def _site(u: Unit, mup: MirrorUsagePoint) -> Site:
    site = u.session.get(Site, mup.site_id)
    assert site is not None  # non-null foreign key, ON DELETE CASCADE
    return site


def _power_of_ten(mmr: MirrorMeterReading) -> int:
    return int(mmr.reading_type.get("powerOfTenMultiplier", 0))


def _day(day_s: int) -> int:
    if day_s % q.DAY_S:
        raise HTTPException(404, "no such ReadingSet")
    return day_s


def usage_point_list(u: Unit, start: int, limit: int) -> etree._Element:
    total, mups = q.list_usage_points(u.session, u.scope, start=start, limit=limit)
    el = encode.list_root(
        "UsagePointList", hrefs.UPT_LIST, total, len(mups), u.poll_rate("mup"), encode.SUBSCRIBABLE
    )
    for mup in mups:
        encode_metering.usage_point(el, mup, _site(u, mup), q.count_meter_readings(u.session, mup))
    return el


def usage_point(u: Unit, mup_id: int) -> etree._Element:
    mup = _mup(u, mup_id)
    return encode_metering.usage_point(None, mup, _site(u, mup), q.count_meter_readings(u.session, mup))


def _meter_reading(
    u: Unit, parent: etree._Element | None, mup_id: int, mmr: MirrorMeterReading
) -> etree._Element:
    sets, _ = q.list_reading_days(u.session, mmr, start=0, limit=0, after_s=None)
    return encode_metering.meter_reading_resource(parent, mup_id, mmr, sets, sets > 0)


def meter_reading_list(u: Unit, mup_id: int, start: int, limit: int) -> etree._Element:
    mup = _mup(u, mup_id)
    total, mmrs = q.list_meter_readings(u.session, mup, start=start, limit=limit)
    el = encode.list_root(
        "MeterReadingList",
        hrefs.meter_reading_list(mup_id),
        total,
        len(mmrs),
        subscribable=encode.SUBSCRIBABLE,
    )
    for mmr in mmrs:
        _meter_reading(u, el, mup_id, mmr)
    return el


def meter_reading(u: Unit, mup_id: int, mmr_id: int) -> etree._Element:
    return _meter_reading(u, None, mup_id, _mmr(u, mup_id, mmr_id))


def reading_type(u: Unit, mup_id: int, mmr_id: int) -> etree._Element:
    return encode_metering.reading_type_resource(mup_id, _mmr(u, mup_id, mmr_id))


def latest_reading(u: Unit, mup_id: int, mmr_id: int) -> etree._Element:
    mmr = _mmr(u, mup_id, mmr_id)
    found = q.latest_reading(u.session, mmr)
    if found is None:
        raise HTTPException(404, "this MeterReading has no readings yet")
    return encode_metering.reading(
        None, hrefs.latest_reading(mup_id, mmr_id), found, _power_of_ten(mmr), encode.SUBSCRIBABLE
    )


def _reading_set(
    u: Unit, parent: etree._Element | None, mup_id: int, mmr: MirrorMeterReading, day_s: int, count: int
) -> etree._Element:
    mrid = derived_mrid(u.ctx.settings.pen, "ReadingSet", mmr.mrid, day_s)
    return encode_metering.reading_set(parent, mup_id, mmr.id, day_s, q.DAY_S, mrid, count)


def reading_set_list(
    u: Unit, mup_id: int, mmr_id: int, start: int, limit: int, after_s: int | None
) -> etree._Element:
    mmr = _mmr(u, mup_id, mmr_id)
    total, days = q.list_reading_days(u.session, mmr, start=start, limit=limit, after_s=after_s)
    counts = q.count_day_readings(u.session, mmr, days)
    el = encode.list_root(
        "ReadingSetList",
        hrefs.reading_set_list(mup_id, mmr_id),
        total,
        len(days),
        subscribable=encode.SUBSCRIBABLE,
    )
    for day_s in days:
        _reading_set(u, el, mup_id, mmr, day_s, counts[day_s])
    return el


def reading_set(u: Unit, mup_id: int, mmr_id: int, day_s: int) -> etree._Element:
    mmr = _mmr(u, mup_id, mmr_id)
    count = q.count_day_readings(u.session, mmr, [_day(day_s)])[day_s]
    if count == 0:
        raise HTTPException(404, "no such ReadingSet")
    return _reading_set(u, None, mup_id, mmr, day_s, count)


def reading_list(
    u: Unit, mup_id: int, mmr_id: int, day_s: int, start: int, limit: int, after_s: int | None
) -> etree._Element:
    mmr = _mmr(u, mup_id, mmr_id)
    if q.count_day_readings(u.session, mmr, [_day(day_s)])[day_s] == 0:
        raise HTTPException(404, "no such ReadingSet")
    total, rows = q.list_day_readings(u.session, mmr, day_s, start=start, limit=limit, after_s=after_s)
    el = encode.list_root(
        "ReadingList",
        hrefs.reading_list(mup_id, mmr_id, day_s),
        total,
        len(rows),
        subscribable=encode.SUBSCRIBABLE,
    )
    power = _power_of_ten(mmr)
    for r in rows:
        encode_metering.reading(el, hrefs.reading(mup_id, mmr_id, day_s, r.id), r, power)
    return el


def reading(u: Unit, mup_id: int, mmr_id: int, day_s: int, reading_id: int) -> etree._Element:
    mmr = _mmr(u, mup_id, mmr_id)
    found = q.get_day_reading(u.session, mmr, _day(day_s), reading_id)
    if found is None:
        raise HTTPException(404, "no such Reading")
    return encode_metering.reading(
        None, hrefs.reading(mup_id, mmr_id, day_s, reading_id), found, _power_of_ten(mmr)
    )
