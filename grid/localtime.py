"""UTC offsets, local hours and local months of many instants at once (DST-aware, vectorised).

Schedules and load shapes are written in local time, so every interval of a run needs its local
hour and month. Asking the zone database once per interval costs a Python call each (a year of
15-minute intervals is 35,136 of them); offsets change only a few times a year, so we ask once a
day, find each change by bisection to the second, and spread the offsets with one searchsorted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

DAY_S = 86400


@lru_cache(maxsize=64)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def _offset_s(epoch_s: int, zone: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(epoch_s, tz=zone).utcoffset() or timedelta(0)
    return int(offset.total_seconds())


def _change_at(lo: int, hi: int, zone: ZoneInfo) -> int:
    """First second in (lo, hi] whose offset differs from lo's (there is one: hi's differs)."""
    before = _offset_s(lo, zone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_s(mid, zone) == before:
            lo = mid
        else:
            hi = mid
    return hi


def utc_offsets_s(epoch_s: np.ndarray, tz: str) -> np.ndarray:
    """UTC offset in seconds (local = UTC + offset) of each instant, same shape as `epoch_s`.

    Exact for any zone whose offset changes at most once within a day (all of them, in practice).
    Fractional instants take the offset of their whole second.
    """
    epoch = np.floor(np.asarray(epoch_s)).astype(np.int64)
    if epoch.size == 0:
        return np.zeros(epoch.shape, dtype=np.int64)
    zone = _zone(tz)
    first, last = int(epoch.min()), int(epoch.max())
    probes = np.arange(first, last + DAY_S, DAY_S, dtype=np.int64)
    probes[-1] = min(int(probes[-1]), last)  # the last probe is `last` itself, or earlier
    offsets = [_offset_s(int(p), zone) for p in probes]
    starts = [first]
    values = [offsets[0]]
    for i in range(1, len(probes)):
        if offsets[i] != offsets[i - 1]:
            starts.append(_change_at(int(probes[i - 1]), int(probes[i]), zone))
            values.append(offsets[i])
    index = np.searchsorted(np.asarray(starts, dtype=np.int64), epoch, side="right") - 1
    return np.asarray(values, dtype=np.int64)[index]


def local_seconds(epoch_s: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock time as seconds since 1970-01-01 00:00 local (int64)."""
    epoch = np.asarray(epoch_s, dtype=np.int64)
    return epoch + utc_offsets_s(epoch, tz)


def local_month_hour(epoch_s: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """Local month (1-12) and hour (0-23) of each instant."""
    local = local_seconds(epoch_s, tz)
    months = local.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12 + 1
    hours = (local % DAY_S) // 3600
    return months.astype(int), hours.astype(int)


def local_fractional_hours(epoch_s: np.ndarray, tz: str) -> np.ndarray:
    """Fractional local clock hour (0 <= h < 24) of each instant (fractional instants keep their fraction)."""
    epoch = np.asarray(epoch_s)
    return ((epoch + utc_offsets_s(epoch, tz)) % DAY_S) / 3600.0
