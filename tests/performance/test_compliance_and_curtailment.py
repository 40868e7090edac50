"""Compliance and curtailment maths (performance/), and the limits-in-force view of envelope blocks.

Expected values are worked out by hand from the rules in the module docstrings.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from gridshare.core.logs import JsonFormatter
from gridshare.envelopes.blocks import BLOCK_DTYPE, in_force
from gridshare.grid.agreements import CurtailmentGuarantee
from gridshare.performance.compliance import allowed_limits, assess
from gridshare.performance.curtailment import curtailed_w, daily, settle
from gridshare.performance.timeline import LimitTimeline

INF = float("inf")


def test_newest_block_wins_where_blocks_overlap_and_gaps_are_left_out() -> None:
    blocks = np.array(
        [(0, 600, 5000.0, 900.0, 0), (300, 600, 2000.0, 900.0, 100), (1200, 300, 7000.0, 900.0, 100)],
        dtype=BLOCK_DTYPE,
    )
    got = [
        tuple(int(x) if i != 2 else float(x) for i, x in enumerate(row))[:3]
        for row in in_force(blocks, 100, 1400)
    ]
    # 100-300 the first block; 300-900 the newer one supersedes it; 900-1200 nothing; 1200-1400 the third
    assert got == [(100, 200, 5000.0), (300, 600, 2000.0), (1200, 200, 7000.0)]


def test_a_later_span_cuts_an_earlier_one() -> None:
    t = LimitTimeline.build([(0, 1000, 5000, 500, 0, False), (400, 800, 1000, 500, 400, True)], 1500, None)
    export, imp = t.at(np.array([100, 500, 900, 2000]))
    assert list(export) == [5000, 1000, 1500, 1500]  # after 800 and beyond every span: the default
    assert list(imp) == [500, 500, INF, INF]


def test_a_lower_limit_is_allowed_the_response_time_then_the_ramp() -> None:
    # 5 kW until 600, then 1 kW published at 600; 60 s to act, then 10 W/s down.
    t = LimitTimeline.build([(0, 600, 5000, 5000, 0, False), (600, 1200, 1000, 5000, 600, False)])
    export, _ = allowed_limits(t, np.array([599, 600, 659, 700, 1000]), response_s=60, ramp_w_per_s=10)
    assert list(export) == [5000, 5000, 5000, 5000 - 10 * 40, max(1000, 5000 - 10 * 340)]


def test_a_limit_published_after_it_starts_counts_from_its_publication() -> None:
    t = LimitTimeline.build([(0, 600, 5000, 5000, 0, False), (600, 1200, 1000, 5000, 900, False)])
    export, _ = allowed_limits(t, np.array([800, 960, 961]), response_s=60, ramp_w_per_s=INF)
    assert list(export) == [5000, 5000, 1000]


def test_a_raised_limit_applies_at_once() -> None:
    t = LimitTimeline.build([(0, 600, 1000, 0, 0, False), (600, 1200, 4000, 0, 600, False)])
    export, _ = allowed_limits(t, np.array([601]), response_s=60, ramp_w_per_s=1)
    assert list(export) == [4000]


def test_breaches_are_found_merged_and_measured() -> None:
    t = LimitTimeline.build([(0, 1800, 2000, 3000, 0, False)])
    times = np.arange(0, 1800, 60)
    export = np.full(len(times), 1500.0)
    export[(times >= 600) & (times < 1200)] = 2600.0  # two whole intervals 600 W over
    export[times == 1500] = -3500.0  # one import reading 500 W over the 3 kW import limit
    result = assess(times, export, t, 300, response_s=60, ramp_w_per_s=INF, tolerance_w=100)
    assert result.intervals == 6 and result.compliant_intervals == 3
    assert result.share_compliant == pytest.approx(0.5)
    export_breach, import_breach = result.breaches
    assert (export_breach.direction, export_breach.start_s, export_breach.end_s) == ("export", 600, 1200)
    assert export_breach.max_excess_w == pytest.approx(600.0)
    assert export_breach.energy_over_wh == pytest.approx(600.0 * 600 / 3600)  # 600 W for 10 minutes
    assert (import_breach.direction, import_breach.start_s, import_breach.max_excess_w) == (
        "import",
        1500,
        500.0,
    )
    assert import_breach.energy_over_wh == pytest.approx(500.0 / 5 * 300 / 3600)  # 1 of 5 readings over


def test_readings_within_tolerance_comply() -> None:
    t = LimitTimeline.build([(0, 600, 2000, 3000, 0, False)])
    result = assess(
        np.array([0, 300]),
        np.array([2090.0, -3099.0]),
        t,
        300,
        response_s=0,
        ramp_w_per_s=INF,
        tolerance_w=100,
    )
    assert result.breaches == () and result.share_compliant == 1.0


def test_curtailment_counts_only_intervals_where_the_site_sat_at_its_limit() -> None:
    limit = np.array([1000.0, 1000.0, 1000.0, 1000.0])
    potential = np.array([3000.0, 3000.0, 500.0, 3000.0])
    measured = np.array([np.nan, 980.0, np.nan, 400.0])  # none / at the limit / none / well below it
    assert list(curtailed_w(limit, potential, measured, tolerance_w=50)) == [2000.0, 2000.0, 0.0, 0.0]


def test_days_are_local_days() -> None:
    # 2026-06-01 03:00 UTC is 23:00 on 31 May in New York (UTC-4)
    start = 1780282800
    starts = start + 3600 * np.arange(3)  # 23:00, 00:00, 01:00 local
    ones = np.full(3, 1000.0)
    days = daily(
        starts, 3600, "America/New_York", ones, ones, ones * 0, ones * 0, np.array([True, False, False])
    )
    assert [(str(d.day), d.intervals, d.telemetry_intervals) for d in days] == [
        ("2026-05-31", 1, 1),
        ("2026-06-01", 2, 0),
    ]
    assert days[1].curtailed_export_kwh == pytest.approx(2.0)


def test_settlement_against_a_guarantee() -> None:
    g = CurtailmentGuarantee(max_annual_pct=5.0, price_per_kwh=0.08, currency="GBP")
    s = settle(curtailed_kwh=800.0, potential_kwh=10000.0, guarantee=g)
    assert s.curtailed_pct == pytest.approx(8.0)
    assert s.allowed_kwh == pytest.approx(500.0)
    assert s.beyond_kwh == pytest.approx(300.0)
    assert s.owed == pytest.approx(24.0)
    within = settle(300.0, 10000.0, g)
    assert within.beyond_kwh == 0 and within.owed == 0
    assert settle(300.0, 10000.0, None).owed == 0


def test_json_log_lines_carry_the_same_event() -> None:
    record = logging.makeLogRecord(
        {
            "name": "gridshare.feeder",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "feeder %s: %s",
            "args": ("demo-feeder", "fallback"),
            "created": 1795392000.5,
            "feeder": "demo-feeder",
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "feeder demo-feeder: fallback"
    assert line["level"] == "WARNING" and line["logger"] == "gridshare.feeder"
    assert line["time"] == "2026-11-23T00:00:00.500+00:00" and line["feeder"] == "demo-feeder"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]
