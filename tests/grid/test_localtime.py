"""Local month, hour and offsets computed once a day must equal the zone database asked per instant.

The engine's schedules and load shapes are in local time; the vectorised lookup replaced a loop that
asked the zone database for every 15-minute slot (a third of a year-long run's time). These cases
cross DST in both hemispheres, a half-hour zone with a half-hour DST shift, and fractional instants.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gridshare.envelopes.forecast import local_hours
from gridshare.grid.agreements import IntervalTimes
from gridshare.grid.localtime import local_month_hour, utc_offsets_s

ZONES = [
    "UTC",
    "America/New_York",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Europe/Berlin",
    "Asia/Kolkata",
]


def _reference(epoch_s: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    zone = ZoneInfo(tz)
    locals_ = [datetime.fromtimestamp(int(e), tz=zone) for e in epoch_s]
    offsets = np.array([int(d.utcoffset().total_seconds()) for d in locals_])  # type: ignore[union-attr]
    return offsets, np.array([d.month for d in locals_]), np.array([d.hour for d in locals_])


@pytest.mark.parametrize("tz", ZONES)
def test_a_year_of_quarter_hours_matches_the_zone_database(tz: str) -> None:
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    epoch = start + 900 * np.arange(365 * 96, dtype=np.int64)
    offsets, months, hours = _reference(epoch, tz)
    np.testing.assert_array_equal(utc_offsets_s(epoch, tz), offsets)
    got_month, got_hour = local_month_hour(epoch, tz)
    np.testing.assert_array_equal(got_month, months)
    np.testing.assert_array_equal(got_hour, hours)
    times = IntervalTimes.build(epoch, tz)
    np.testing.assert_array_equal(times.month, months)
    np.testing.assert_array_equal(times.hour, hours)


def test_changes_inside_an_interval_and_fractional_instants() -> None:
    # odd instants (7 minutes 13 s apart) around the 2026 US spring-forward and fall-back
    tz = "America/New_York"
    start = int(datetime(2026, 3, 7, tzinfo=UTC).timestamp())
    epoch = start + 433 * np.arange(2000, dtype=np.int64)
    offsets, _, hours = _reference(epoch, tz)
    np.testing.assert_array_equal(utc_offsets_s(epoch, tz), offsets)
    frac = epoch + 0.5
    expected = ((epoch + offsets) % 86400 + 0.5) / 3600.0
    np.testing.assert_allclose(local_hours(frac, tz), expected)
    assert np.array_equal(np.floor(local_hours(epoch.astype(float), tz)).astype(int), hours)


def test_single_instant_and_empty() -> None:
    assert utc_offsets_s(np.array([0]), "Australia/Adelaide")[0] == 34200
    assert utc_offsets_s(np.array([], dtype=np.int64), "UTC").shape == (0,)
