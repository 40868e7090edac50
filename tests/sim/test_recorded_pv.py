"""A recorded PV series drives the fleet's PV in place of the clear sky: what a planner gets from a CSV.

Expected values are read off the CSV written here (a site's PV is its rating times the recorded share,
times its own 0.95-1.0 panel factor), and the errors must name `fleet.pv_profile` and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridshare.sim.fleet import build_fleet, step_times
from gridshare.sim.scenario import ScenarioError, parse_scenario
from gridshare.sim.weather import recorded_share

TZ = "Australia/Brisbane"  # no daylight saving: local hours are UTC+10 all year


def _write(path: Path, rows: list[tuple[str, Any]], header: str = "time,share") -> Path:
    path.write_text(header + "\n" + "".join(f"{t},{v}\n" for t, v in rows))
    return path


def _scenario(tmp_path: Path, profile: dict[str, Any], **extra: Any) -> Any:
    raw = {
        "name": "rec",
        "network": {"generate": {"sites": 12, "transformers": 2}},
        "start": "2026-12-21T00:00:00",
        "duration_h": 24,
        "fleet": {"pv_profile": profile, "cloud_variability": 0.8},
        **extra,
    }
    return parse_scenario(raw, base_dir=tmp_path)


def test_sites_follow_the_recorded_series_without_simulated_clouds(tmp_path: Path) -> None:
    # a triangle from 06:00 to 18:00 local, peaking at 0.8 at noon; a dip to 0.2 at 13:00 (a cloud)
    rows = [("2026-12-21T00:00", 0), ("2026-12-21T06:00", 0), ("2026-12-21T12:00", 0.8)]
    rows += [("2026-12-21T12:30", 0.75), ("2026-12-21T13:00", 0.2), ("2026-12-21T13:30", 0.7)]
    rows += [("2026-12-21T18:00", 0), ("2026-12-22T00:00", 0)]
    _write(tmp_path / "pv.csv", rows)
    scenario = _scenario(tmp_path, {"file": "pv.csv"})
    nf = scenario.network_file()
    times = step_times(scenario.start_s(nf.network.timezone), scenario.duration_s, 300)
    sites = [s for s in build_fleet(scenario, nf, times) if s.spec.pv_w > 0]
    assert sites
    hour = (times - times[0]) / 3600.0  # the run starts at local midnight
    for s in sites:
        share = s.pv_available_w / s.spec.pv_w
        assert share[hour < 6].max() == 0 and share[hour >= 18].max() == 0  # dark outside the record's day
        # up to a five-minute shift per site; the panel factor is between 0.95 and 1
        assert 0.8 * 0.95 - 1e-9 <= share[(hour >= 11.9) & (hour <= 12.1)].max() <= 0.8 + 1e-9
        assert share[(hour >= 12.9) & (hour <= 13.1)].min() < 0.3  # the recorded dip, not smoothed away
    # with 0.8 cloud variability the simulated clouds would have dimmed a clear morning; the record did not
    morning = (hour > 8) & (hour < 11)
    expected = np.interp(hour[morning], [6, 12], [0, 0.8])
    for s in sites:
        ratio = s.pv_available_w[morning] / s.spec.pv_w / np.maximum(expected, 1e-9)
        assert ratio.max() <= 1.0 + 0.05 and ratio.min() >= 0.9  # only the shift and the panel factor


def test_a_single_recorded_day_drives_any_date_by_time_of_day(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "day.csv", [("2025-03-01T06:00", 0), ("2025-03-01T12:00", 1.0), ("2025-03-01T18:00", 0)]
    )
    times = step_times(1_797_775_200, 86400, 3600)  # 2026-12-21 00:00 Brisbane, hourly
    share = recorded_share(path, times, TZ, daily=True)
    assert (
        share[12] == pytest.approx(1.0) and share[9] == pytest.approx(0.5) and share[15] == pytest.approx(0.5)
    )
    # between 18:00 and 06:00 the record wraps from the evening's 0 to the morning's 0
    assert share[0] == 0 and share[21] == 0
    with pytest.raises(ValueError, match=r"fleet.pv_profile.*covers 2025-03-01T06:00.*daily: true"):
        recorded_share(path, times, TZ)


def test_times_with_an_offset_are_taken_as_given(tmp_path: Path) -> None:
    # 02:00 UTC is noon in Brisbane
    path = _write(tmp_path / "utc.csv", [("2026-12-20T20:00+00:00", 0), ("2026-12-21T02:00Z", 1.0)])
    times = np.array([1_797_775_200 + 12 * 3600])  # local noon
    assert recorded_share(path, times, TZ)[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("when,share\n2026-12-21T00:00,0\n", r"no column 'time' \(columns: when, share\)"),
        ("time,share\n2026-12-21T00:00,0\nnoon,0.5\n", r"line 3: time 'noon' is not ISO 8601"),
        ("time,share\n2026-12-21T00:00,0\n2026-12-21T12:00,high\n", r"line 3: share 'high' is not a number"),
        (
            "time,share\n2026-12-21T00:00,0\n2026-12-21T12:00,4500\n",
            r"line 3: share 4500 is outside .*not W or kW",
        ),
        ("time,share\n2026-12-21T00:00,0\n2026-12-21T00:00,0.1\n", r"the same time appears twice"),
        ("time,share\n2026-12-21T00:00,0\n", r"needs at least two rows, has 1"),
    ],
)
def test_a_bad_record_is_refused_naming_the_field_and_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"fleet\.pv_profile") as err:
        recorded_share(path, step_times(1_797_775_200, 3600, 300), TZ)
    assert err.match(message)


def test_a_missing_file_or_unknown_key_stops_the_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"fleet.pv_profile.file: .*nowhere.csv does not exist"):
        _scenario(tmp_path, {"file": "nowhere.csv"})
    _write(tmp_path / "pv.csv", [("2026-12-21T00:00", 0), ("2026-12-22T00:00", 0)])
    with pytest.raises(ScenarioError, match="colum"):
        _scenario(tmp_path, {"file": "pv.csv", "colum": "share"})
