"""The Metering function set in 2030.5 XML (§10.4): what clients mirror, and its read side.

MirrorUsagePoints as the client posted them, and the UsagePoint / MeterReading / ReadingSet / Reading
views of them, in the units of each MeterReading's ReadingType. Built on the primitives of encode.py.
"""

from __future__ import annotations

import time
from typing import Any

from lxml import etree

from gridshare.server.wire import hrefs
from gridshare.server.wire import shapes as m
from gridshare.server.wire.encode import hex_binary, link, root, sub


def mirror_usage_point(
    parent: etree._Element | None, mup: m.MirrorUsagePointShape, site: m.SiteShape, post_rate_s: int
) -> etree._Element:
    href = hrefs.mup(mup.id)
    el = root("MirrorUsagePoint", href) if parent is None else sub(parent, "MirrorUsagePoint", href=href)
    sub(el, "mRID", mup.mrid)
    if mup.description:
        sub(el, "description", mup.description)
    sub(el, "roleFlags", hex_binary(mup.role_flags, 4))
    sub(el, "serviceCategoryKind", mup.service_category)
    sub(el, "status", mup.status)
    sub(el, "deviceLFDI", site.lfdi)
    for mmr in mup.meter_readings:
        reading = sub(el, "MirrorMeterReading")
        sub(reading, "mRID", mmr.mrid)
        if mmr.description:
            sub(reading, "description", mmr.description)
        reading_type(reading, mmr.reading_type)
    sub(el, "postRate", mup.post_rate_s or post_rate_s)
    return el


#: ReadingType children in XSD order and how each is written.
READING_TYPE_FIELDS = (
    "accumulationBehaviour",
    "commodity",
    "dataQualifier",
    "flowDirection",
    "intervalLength",
    "kind",
    "maxNumberOfIntervals",
    "numberOfConsumptionBlocks",
    "numberOfTouTiers",
    "phase",
    "powerOfTenMultiplier",
    "subIntervalLength",
    "supplyLimit",
    "tieredConsumptionBlocks",
    "uom",
)


def reading_type(parent: etree._Element, fields: dict[str, object]) -> None:
    if not fields:
        return
    el = sub(parent, "ReadingType")
    for name in READING_TYPE_FIELDS:
        if name in fields:
            sub(el, name, fields[name])


# --- metering (the read side of mirrors) -------------------------------------------------------------

#: UsagePoint.roleFlags bit 0, isMirror: "SHALL be set if the server is not the measurement device".
ROLE_IS_MIRROR = 0x01


def usage_point(
    parent: etree._Element | None, mup: m.MirrorUsagePointShape, site: m.SiteShape, reading_count: int
) -> etree._Element:
    """The UsagePoint of a MirrorUsagePoint: what the client mirrored, marked as a mirror."""
    href = hrefs.upt(mup.id)
    el = root("UsagePoint", href) if parent is None else sub(parent, "UsagePoint", href=href)
    sub(el, "mRID", mup.mrid)
    if mup.description:
        sub(el, "description", mup.description)
    sub(el, "roleFlags", hex_binary(mup.role_flags | ROLE_IS_MIRROR, 4))
    sub(el, "serviceCategoryKind", mup.service_category)
    sub(el, "status", mup.status)
    sub(el, "deviceLFDI", site.lfdi)
    link(el, "MeterReadingListLink", hrefs.meter_reading_list(mup.id), reading_count)
    return el


def meter_reading_resource(
    parent: etree._Element | None,
    mup_id: int,
    mmr: m.MeterReadingShape,
    set_count: int,
    has_reading: bool,
) -> etree._Element:
    """A MeterReading: links to its newest Reading (if any), its ReadingSets and its ReadingType."""
    href = hrefs.meter_reading(mup_id, mmr.id)
    el = root("MeterReading", href) if parent is None else sub(parent, "MeterReading", href=href)
    sub(el, "mRID", mmr.mrid)
    if mmr.description:
        sub(el, "description", mmr.description)
    if has_reading:
        link(el, "ReadingLink", hrefs.latest_reading(mup_id, mmr.id))
    link(el, "ReadingSetListLink", hrefs.reading_set_list(mup_id, mmr.id), set_count)
    link(el, "ReadingTypeLink", hrefs.reading_type(mup_id, mmr.id))
    return el


def reading_type_resource(mup_id: int, mmr: m.MeterReadingShape) -> etree._Element:
    el = root("ReadingType", hrefs.reading_type(mup_id, mmr.id))
    for name in READING_TYPE_FIELDS:
        if name in mmr.reading_type:
            sub(el, name, mmr.reading_type[name])
    return el


def reading_set(
    parent: etree._Element | None,
    mup_id: int,
    mmr_id: int,
    day_s: int,
    day_length_s: int,
    mrid: str,
    reading_count: int,
) -> etree._Element:
    """One UTC day of a MeterReading's readings."""
    href = hrefs.reading_set(mup_id, mmr_id, day_s)
    el = root("ReadingSet", href) if parent is None else sub(parent, "ReadingSet", href=href)
    sub(el, "mRID", mrid)
    sub(el, "description", f"{time.strftime('%Y-%m-%d', time.gmtime(day_s))} UTC")
    period = sub(el, "timePeriod")
    sub(period, "duration", day_length_s)
    sub(period, "start", day_s)
    link(el, "ReadingListLink", hrefs.reading_list(mup_id, mmr_id, day_s), reading_count)
    return el


def reading(
    parent: etree._Element | None,
    href: str,
    r: m.ReadingShape,
    power_of_ten: int,
    subscribable: int | None = None,
) -> etree._Element:
    """A Reading in the units of its MeterReading's ReadingType (`power_of_ten` is its multiplier).

    A reading stored under an older multiplier is rescaled; its duration is 0 when the client sent none.
    """
    attrs: dict[str, Any] = {"href": href, "subscribable": subscribable}
    el = root("Reading", **attrs) if parent is None else sub(parent, "Reading", **attrs)
    if r.quality_flags is not None:
        sub(el, "qualityFlags", hex_binary(r.quality_flags, 4))
    period = sub(el, "timePeriod")
    sub(period, "duration", r.duration_s or 0)
    sub(period, "start", r.time_s)
    sub(el, "value", rescale(r.value, r.power_of_ten, power_of_ten))
    return el


def rescale(value: int, from_power: int, to_power: int) -> int:
    """value x 10^from_power expressed in units of 10^to_power (exact when scaling up, else rounded)."""
    if from_power >= to_power:
        return value * 10 ** (from_power - to_power)
    return round(value / 10 ** (to_power - from_power))
