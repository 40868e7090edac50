"""Fields of the 2030.5 Time resource for a configured time zone (standard offset excludes DST)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class TimeFields:
    tz_offset_s: int
    dst_offset_s: int
    dst_start_s: int
    dst_end_s: int
    local_time_s: int


@functools.lru_cache(maxsize=64)
def _dst_window(tz_name: str, year: int) -> tuple[int, int, int]:
    """(start, end, offset) of daylight saving in `year`, found hour by hour; zeros without DST."""
    tz = ZoneInfo(tz_name)
    t = datetime(year, 1, 1, tzinfo=UTC)
    end_of_year = datetime(year + 1, 1, 1, tzinfo=UTC)
    previous = t.astimezone(tz).dst() or timedelta(0)
    start = end = 0
    offset = 0
    while t < end_of_year:
        t += timedelta(hours=1)
        dst = t.astimezone(tz).dst() or timedelta(0)
        if dst != previous:
            if dst:
                start, offset = int(t.timestamp()), int(dst.total_seconds())
            else:
                end = int(t.timestamp())
            previous = dst
    return start, end, offset


def time_fields(now_s: int, tz_name: str) -> TimeFields:
    tz = ZoneInfo(tz_name)
    local = datetime.fromtimestamp(now_s, UTC).astimezone(tz)
    utc_offset = local.utcoffset() or timedelta(0)
    dst = local.dst() or timedelta(0)
    start, end, dst_offset = _dst_window(tz_name, local.year)
    return TimeFields(
        tz_offset_s=int((utc_offset - dst).total_seconds()),
        dst_offset_s=dst_offset,
        dst_start_s=start,
        dst_end_s=end,
        local_time_s=now_s + int(utc_offset.total_seconds()),
    )
