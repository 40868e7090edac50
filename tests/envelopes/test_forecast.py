"""Profile and persistence forecasts, and staleness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridshare.envelopes.forecast import ProfileSpec, Telemetry, persistence_forecast, profile_forecast
from gridshare.grid.units import W_PER_KW as KW

RICHMOND = {"tz": "America/New_York", "latitude_deg": 37.54, "longitude_deg": -77.44}


def _day(start: datetime, **specs: ProfileSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fc = profile_forecast(specs, start, 900, 96, issued_at=start, **RICHMOND)
    hours_utc = np.arange(96) * 0.25
    return hours_utc, fc.load_w, fc.generation_w


def test_pv_is_zero_at_night_and_peaks_near_solar_noon() -> None:
    start = datetime(2026, 6, 21, tzinfo=UTC)
    hours, _, gen = _day(start, home=ProfileSpec(pv_w=10 * KW))
    # Solar noon in Richmond is about 12:00 + 77.44/15 h = 17:10 UTC.
    peak_hour = hours[int(np.argmax(gen[:, 0]))]
    assert 16.5 <= peak_hour <= 17.75
    assert gen[:, 0].max() == pytest.approx(10_000, rel=0.05)  # midsummer noon ~ pv_w
    assert gen[hours == 5.0, 0] == 0.0  # 01:00 local
    assert np.all(gen >= 0)


def test_winter_pv_peak_is_well_below_summer() -> None:
    _, _, summer = _day(datetime(2026, 6, 21, tzinfo=UTC), home=ProfileSpec(pv_w=10 * KW))
    _, _, winter = _day(datetime(2026, 12, 21, tzinfo=UTC), home=ProfileSpec(pv_w=10 * KW))
    assert winter.max() < 0.7 * summer.max()
    assert np.count_nonzero(winter) < np.count_nonzero(summer)  # shorter days


def test_residential_load_peaks_in_the_local_evening() -> None:
    hours, load, _ = _day(datetime(2026, 1, 15, tzinfo=UTC), home=ProfileSpec(load_w=5 * KW))
    local_peak = (hours[int(np.argmax(load[:, 0]))] - 5) % 24  # EST = UTC-5
    assert 17.5 <= local_peak <= 19.5
    assert load[:, 0].max() <= 5_000
    assert load[:, 0].min() > 0


def test_staleness_is_judged_from_the_issue_time() -> None:
    issued = datetime(2026, 1, 15, 6, tzinfo=UTC)
    fc = profile_forecast({"a": ProfileSpec(load_w=1 * KW)}, issued, 300, 12, issued_at=issued, **RICHMOND)
    assert not fc.is_stale(issued + timedelta(minutes=30), max_age_s=3600)
    assert fc.is_stale(issued + timedelta(hours=2), max_age_s=3600)


def test_persistence_starts_at_the_measurement_and_returns_to_the_profile() -> None:
    start = datetime(2026, 6, 21, 15, tzinfo=UTC)  # 11:00 local, the sun is up
    base = profile_forecast(
        {"a": ProfileSpec(pv_w=10 * KW, load_w=4 * KW)}, start, 300, 36, issued_at=start, **RICHMOND
    )
    measured_at = start - timedelta(minutes=2)
    cloudy_gen = 0.5 * base.generation_w[0, 0]
    fc = persistence_forecast(base, {"a": Telemetry(measured_at, load_w=6_000, generation_w=cloudy_gen)})
    assert fc.issued_at == measured_at
    assert fc.generation_w[0, 0] == pytest.approx(cloudy_gen, rel=0.1)
    assert fc.load_w[0, 0] == pytest.approx(6_000, rel=0.1)
    # After the one-hour blend the profile is back.
    assert fc.generation_w[-1, 0] == pytest.approx(base.generation_w[-1, 0])
    assert fc.load_w[-1, 0] == pytest.approx(base.load_w[-1, 0])


def test_forecast_lookup_refuses_intervals_it_does_not_cover() -> None:
    start = datetime(2026, 6, 21, tzinfo=UTC)
    fc = profile_forecast({"a": ProfileSpec(load_w=1 * KW)}, start, 300, 4, issued_at=start, **RICHMOND)
    inside = int(start.timestamp()) + np.array([0, 600])
    load, _ = fc.on_grid(inside, ["a"])
    assert load.shape == (2, 1)
    with pytest.raises(ValueError, match="not the requested horizon"):
        fc.on_grid(inside + 3600, ["a"])
    with pytest.raises(KeyError, match="b"):
        fc.on_grid(inside, ["b"])
