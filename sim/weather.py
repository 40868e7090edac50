"""What the sky and the households do: PV availability and base load per step, for the whole run.

PV uses pvlib's Ineichen clear sky and a fixed array facing the equator, so mornings, evenings and
the season look like a real roof rather than the engine's own forecast shape (the difference is the
forecast error a real fleet shows). Clouds are one regional series of passing shadows, seen by each
site a few minutes earlier or later; load is the engine's daily shape with AR(1) noise.
Everything is precomputed as arrays, so stepping thousands of sites costs an index, not a model.
"""

from __future__ import annotations

import csv
import math
import warnings
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from gridshare.envelopes.forecast import load_shape, local_hours

#: System losses (soiling, temperature, wiring, inverter): output share of rated at 1000 W/m2.
PERFORMANCE_RATIO = 0.85
#: A recorded share above this is a unit mistake (W or kW instead of a share), not an oversized array.
MAX_RECORDED_SHARE = 1.2
DAY_S = 86400


def clear_sky_share(
    epoch_s: np.ndarray, latitude_deg: float, longitude_deg: float, tilt_deg: float | None = None
) -> np.ndarray:
    """PV output as a share of rated power under a clear sky, (n,) in [0, 1]."""
    import pandas as pd
    import pvlib

    times = pd.DatetimeIndex(pd.to_datetime(epoch_s, unit="s", utc=True))
    location = pvlib.location.Location(latitude_deg, longitude_deg, tz="UTC")
    with warnings.catch_warnings():  # pvlib still calls pandas' deprecated `dayofyear`
        warnings.filterwarnings("ignore", message=".*dayofyear.*")
        sky = location.get_clearsky(times, model="ineichen")
        sun = location.get_solarposition(times)
    tilt = abs(latitude_deg) * 0.6 if tilt_deg is None else tilt_deg
    azimuth = 180.0 if latitude_deg >= 0 else 0.0
    poa = pvlib.irradiance.get_total_irradiance(
        tilt, azimuth, sun["apparent_zenith"], sun["azimuth"], sky["dni"], sky["ghi"], sky["dhi"]
    )
    share = np.nan_to_num(poa["poa_global"].to_numpy(), nan=0.0) / 1000.0 * PERFORMANCE_RATIO
    return np.clip(share, 0.0, 1.0)


def recorded_share(
    path: Path,
    epoch_s: np.ndarray,
    tz: str,
    time_column: str = "time",
    share_column: str = "share",
    daily: bool = False,
) -> np.ndarray:
    """A recorded PV output series (share of rated) at the run's steps, linearly interpolated.

    Errors name `fleet.pv_profile` and the row, so a planner can fix the file: a missing column, a
    time or share that does not parse, a share out of [0, MAX_RECORDED_SHARE], repeated times, or a
    record that does not cover the run (unless `daily`, which wraps one day by local time of day).
    """
    where = f"fleet.pv_profile ({path})"
    zone = ZoneInfo(tz)
    times: list[float] = []
    shares: list[float] = []
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in (time_column, share_column) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{where}: no column {', '.join(map(repr, missing))} "
                    f"(columns: {', '.join(reader.fieldnames or []) or 'none'})"
                )
            for row in reader:
                stamp, share = _recorded_row(row, reader.line_num, where, time_column, share_column)
                stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=zone)
                if daily:
                    local = stamp.astimezone(zone)
                    times.append(local.hour * 3600.0 + local.minute * 60.0 + local.second)
                else:
                    times.append(stamp.timestamp())
                shares.append(share)
    except OSError as exc:
        raise ValueError(f"{where}: {exc.strerror or exc}") from None
    if len(times) < 2:
        raise ValueError(f"{where}: needs at least two rows, has {len(times)}")
    t = np.asarray(times)
    order = np.argsort(t, kind="stable")
    t, v = t[order], np.asarray(shares)[order]
    if np.any(np.diff(t) == 0):
        raise ValueError(f"{where}: the same time appears twice" + (" (by time of day)" if daily else ""))
    if daily:
        hours = local_hours(np.asarray(epoch_s), tz)
        return np.interp(hours * 3600.0, t, v, period=DAY_S)
    first, last = float(epoch_s[0]), float(epoch_s[-1])
    if t[0] > first or t[-1] < last:
        span = [
            datetime.fromtimestamp(x, zone).isoformat(timespec="minutes") for x in (t[0], t[-1], first, last)
        ]
        raise ValueError(
            f"{where}: the record covers {span[0]} to {span[1]}, the run {span[2]} to {span[3]} "
            "(set `daily: true` to use it by time of day)"
        )
    return np.interp(np.asarray(epoch_s, dtype=float), t, v)


def _recorded_row(
    row: dict[str, str], line: int, where: str, time_column: str, share_column: str
) -> tuple[datetime, float]:
    """One CSV row of a recorded PV series: (time, share), or a ValueError naming the line."""
    raw_time, raw_share = row.get(time_column), row.get(share_column)
    try:
        stamp = datetime.fromisoformat((raw_time or "").strip())
    except ValueError:
        raise ValueError(f"{where}: line {line}: {time_column} {raw_time!r} is not ISO 8601") from None
    try:
        share = float(raw_share or "")
    except ValueError:
        raise ValueError(f"{where}: line {line}: {share_column} {raw_share!r} is not a number") from None
    if not 0.0 <= share <= MAX_RECORDED_SHARE:
        raise ValueError(
            f"{where}: line {line}: {share_column} {share:g} is outside [0, {MAX_RECORDED_SHARE:g}] "
            "(a share of rated power, not W or kW)"
        )
    return stamp, share


def cloud_series(n_steps: int, step_s: float, variability: float, rng: np.random.Generator) -> np.ndarray:
    """A regional clear-sky index per step in (0, 1]: passing clouds whose number and depth grow with
    `variability` (0 = clear all day, 1 = a broken-cloud day)."""
    index = np.ones(n_steps)
    if variability <= 0 or n_steps == 0:
        return index
    duration_s = n_steps * step_s
    n_clouds = rng.poisson(variability * duration_s / 1800.0)  # up to one cloud every half hour
    for _ in range(n_clouds):
        centre = rng.uniform(0, n_steps)
        half_width = max(rng.exponential(600.0) / step_s, 0.5)
        depth = rng.uniform(0.2, 0.8) * variability
        k = np.arange(n_steps)
        shape = np.clip(1.0 - np.abs(k - centre) / (half_width + 1.0), 0.0, 1.0) ** 0.5
        index *= 1.0 - depth * shape
    return np.clip(index, 0.05, 1.0)


def shifted(series: np.ndarray, shift_steps: int) -> np.ndarray:
    """The regional series as a site `shift_steps` downwind sees it (edges held)."""
    if shift_steps == 0:
        return series
    out = np.roll(series, shift_steps)
    if shift_steps > 0:
        out[:shift_steps] = series[0]
    else:
        out[shift_steps:] = series[-1]
    return out


def load_series(
    epoch_s: np.ndarray, tz: str, peak_w: float, profile: str, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Base load per step: the engine's daily shape times AR(1) noise with a 15-minute memory."""
    shape = load_shape(local_hours(epoch_s, tz), profile)
    if noise <= 0 or len(epoch_s) < 2:
        return peak_w * shape
    step_s = float(epoch_s[1] - epoch_s[0])
    phi = math.exp(-step_s / 900.0)
    shocks = rng.normal(0.0, noise * math.sqrt(1 - phi * phi), len(epoch_s))
    ar = np.empty(len(epoch_s))
    ar[0] = rng.normal(0.0, noise)
    for i in range(1, len(epoch_s)):
        ar[i] = phi * ar[i - 1] + shocks[i]
    return peak_w * shape * np.clip(1.0 + ar, 0.3, 2.0)
