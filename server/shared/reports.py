"""What a device's routine report becomes in the store, shared by its route and the fast path.

A MirrorMeterReading post against MirrorMeterReadings that exist as sent, and a Response to a control
the device was sent, are checked the same way wherever they are answered (the application's routes,
server/routes/metering.py and events.py, or the raw-ASGI front, server/shared/fast_reports.py): these
functions are that one check, so both paths refuse and accept exactly the same reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from gridshare.core.settings import Settings
from gridshare.server.shared.device_time import check_device_time
from gridshare.server.wire import decode
from gridshare.store.group_commit import Inserts
from gridshare.store.models import Response as ResponseRow
from gridshare.store.models import TelemetryReading

#: mRID -> (MirrorMeterReading id, ReadingType) of one mirror the caller may post to.
KnownReadings = dict[str, tuple[int, dict[str, Any]]]

#: Response.status values IEEE 2030.5 Table 27 defines: 1-14 and the 252-254 rejections; the rest
#: (0, 15-251, 255) are reserved and refused (CSIP-AUS S-ALL-57 posts 15).
KNOWN_RESPONSE_STATUS = {*range(1, 15), 252, 253, 254}

#: The tables reports go to, as Core tables (plain rows, nothing for the ORM to track).
_READINGS: Table = TelemetryReading.__table__  # type: ignore[assignment]
_RESPONSES: Table = ResponseRow.__table__  # type: ignore[assignment]


def reading_key(mup_id: int) -> tuple[object, ...]:
    """What a mirror's KnownReadings are remembered under (server/shared/check_cache.py)."""
    return ("mirror-readings", mup_id)


def mirror_key(device_lfdi: str, mrid: str) -> tuple[object, ...]:
    """What a checked MirrorUsagePoint re-post is remembered under (its EndDevice's LFDI and its mRID)."""
    return ("mirror-repost", device_lfdi, mrid)


#: description, roleFlags, serviceCategoryKind, status: what a MirrorUsagePoint's row keeps of a post.
MirrorFields = tuple[str | None, int, int, int]


def mirror_fields(body: decode.MirrorUsagePointIn) -> MirrorFields:
    """What of a posted MirrorUsagePoint is stored on its row: a re-post changes nothing if these match."""
    return (body.description, body.role_flags, body.service_category, body.status)


@dataclass(frozen=True)
class MirrorCheck:
    """A MirrorUsagePoint a device re-posts at every discovery, checked: its id, stored fields, readings."""

    mup_id: int
    fields: MirrorFields
    known: KnownReadings


def response_key(end_device_lfdi: str, subject_mrid: str) -> tuple[object, ...]:
    """What a Response's checked subject is remembered under."""
    return ("response-subject", end_device_lfdi, subject_mrid)


def reading_rows(
    known: KnownReadings, readings: list[decode.MeterReadingIn], now_s: int, settings: Settings
) -> list[dict[str, int | None]] | None:
    """The telemetry rows of a report, checked; None if it creates or retypes a MirrorMeterReading.

    Those (a device's first report, a changed ReadingType) take the ordinary write unit; the rest are
    inserts only and go to the report writer. A reading dated outside the accepted window is a 400.
    """
    rows: list[dict[str, int | None]] = []
    for incoming in readings:
        for r in incoming.readings:
            check_device_time(f"MirrorMeterReading {incoming.mrid} {r.time_field}", r.time_s, now_s, settings)
        if incoming.mrid not in known:
            return None
        mmr_id, reading_type = known[incoming.mrid]
        if incoming.reading_type and incoming.reading_type != reading_type:
            return None
        power_of_ten = int(reading_type.get("powerOfTenMultiplier", 0))
        rows.extend(
            {
                "mmr_id": mmr_id,
                "time_s": r.time_s,
                "duration_s": r.duration_s,
                "value": r.value,
                "power_of_ten": power_of_ten,
                "quality_flags": r.quality_flags,
                "received_s": now_s,
            }
            for r in incoming.readings
        )
    return rows


def readings_insert(rows: list[dict[str, int | None]]) -> Inserts:
    """The report's rows, for the report writer: inserted with every other report's of its batch in one
    statement (store/group_commit.py, store/bulk_insert.py), no ORM unit of work, no statement a report."""
    return Inserts(_READINGS, tuple(rows))


@dataclass(frozen=True)
class ResponseSubject:
    """A Response's EndDevice and subject, checked: the site it is for and the operator control, if any."""

    site_id: int
    control_id: int | None


def response_fields(subject: ResponseSubject, body: decode.ResponseIn, now_s: int) -> dict[str, Any]:
    return {
        "site_id": subject.site_id,
        "control_id": subject.control_id,
        "subject_mrid": body.subject_mrid,
        "status": body.status,
        "created_s": body.created_s or now_s,
        "received_s": now_s,
    }


def response_insert(fields: dict[str, Any]) -> Inserts:
    """The Response's row, for the report writer: its result is the stored Response's id (its Location),
    set once the batch holding it has been inserted and committed."""
    return Inserts(_RESPONSES, (fields,), keyed=True)
