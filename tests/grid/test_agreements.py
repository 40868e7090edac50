"""Connection agreements become the per-interval floors and caps a site is held to."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gridshare.grid.agreements import (
    Dynamic,
    Firm,
    Limited,
    Scheduled,
    Staggered,
    agreement_bounds,
    schedule_grid,
)
from gridshare.grid.units import W_PER_KW as KW

NY = "America/New_York"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_scheduled_limit_is_looked_up_by_local_month_and_hour() -> None:
    # Each cell holds month*100 + hour, so the value names the cell it came from.
    grid = np.array([[m * 100 + h for h in range(24)] for m in range(1, 13)], dtype=float)
    starts = [
        _utc("2026-07-15T18:00:00"),  # 14:00 EDT (UTC-4) in July
        _utc("2026-01-15T19:00:00"),  # 14:00 EST (UTC-5) in January
        _utc("2026-03-01T04:30:00"),  # 23:30 EST on 28 February
    ]
    bounds = agreement_bounds(Scheduled(export_w=grid * KW), starts, 10_000 * KW, 50 * KW, tz=NY)
    assert bounds.export_cap_w.tolist() == [714_000, 114_000, 223_000]
    assert bounds.export_floor_w.tolist() == bounds.export_cap_w.tolist()  # a fixed flow
    assert bounds.import_cap_w.tolist() == [50_000] * 3  # no import schedule: the maximum
    assert not bounds.flexible


def test_schedule_shapes_expand_to_288_points() -> None:
    monthly = schedule_grid([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    assert monthly.shape == (12, 24)
    assert monthly[4, 0] == 5 and monthly[4, 23] == 5
    hourly = schedule_grid(list(range(24)))
    assert hourly[0, 7] == 7 and hourly[11, 7] == 7
    flat = schedule_grid(list(range(288)))
    assert flat[1, 0] == 24
    with pytest.raises(ValueError, match="24 \\(hourly\\)"):
        schedule_grid([1, 2, 3])


def test_scheduled_limit_never_exceeds_the_site_maximum() -> None:
    bounds = agreement_bounds(
        Scheduled(export_w=schedule_grid(5_000) * KW), [_utc("2026-06-01T12:00:00")], 2_000 * KW, 0
    )
    assert bounds.export_cap_w.tolist() == [2_000_000]


def test_staggered_switches_at_local_midnight_of_the_upgrade_date() -> None:
    agreement = Staggered(
        switch_at=datetime(2026, 9, 1, tzinfo=ZoneInfo(NY)),
        before_export_w=1_200 * KW,
        after_export_w=3_000 * KW,
    )
    starts = [_utc("2026-09-01T03:55:00"), _utc("2026-09-01T04:00:00"), _utc("2027-01-01T00:00:00")]
    bounds = agreement_bounds(agreement, starts, 3_000 * KW, 100 * KW, tz=NY)
    assert bounds.export_cap_w.tolist() == [1_200_000, 3_000_000, 3_000_000]
    assert bounds.import_cap_w.tolist() == [100_000] * 3


def test_dynamic_site_gets_its_floor_and_the_agreed_maximum() -> None:
    starts = [_utc("2026-06-01T12:00:00"), _utc("2026-06-01T12:05:00")]
    bounds = agreement_bounds(
        Dynamic(export_floor_w=1.5 * KW, import_floor_w=3 * KW), starts, 10 * KW, 20 * KW
    )
    assert bounds.flexible
    assert bounds.export_floor_w.tolist() == [1_500, 1_500]
    assert bounds.export_cap_w.tolist() == [10_000, 10_000]
    assert bounds.import_floor_w.tolist() == [3_000, 3_000]
    assert bounds.import_cap_w.tolist() == [20_000, 20_000]


def test_floor_above_the_maximum_is_reported_against_the_field() -> None:
    problems = Dynamic(export_floor_w=12 * KW).problems(max_export_w=10 * KW, max_import_w=5 * KW)
    assert problems and problems[0][0] == "export_floor_kw"


def test_limited_and_firm_hold_fixed_values_capped_by_the_maxima() -> None:
    start = [_utc("2026-06-01T12:00:00")]
    limited = agreement_bounds(Limited(export_w=20 * KW, import_w=4 * KW), start, 10 * KW, 15 * KW)
    assert (limited.export_cap_w[0], limited.import_cap_w[0]) == (10_000, 4_000)
    firm = agreement_bounds(Firm(), start, 7 * KW, 9 * KW)
    assert (firm.export_cap_w[0], firm.import_cap_w[0]) == (7_000, 9_000)
    assert (firm.export_floor_w[0], firm.import_floor_w[0]) == (7_000, 9_000)


def test_naive_interval_starts_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        agreement_bounds(Firm(), [datetime(2026, 1, 1)], 1 * KW, 1 * KW)
