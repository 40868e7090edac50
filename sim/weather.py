"""What the sky and the households do: PV availability and base load per step, for the whole run.

PV uses pvlib's Ineichen clear sky and a fixed array facing the equator, so mornings, evenings and
the season look like a real roof rather than the engine's own forecast shape (the difference is the
forecast error a real fleet shows). Clouds are one regional series of passing shadows, seen by each
site a few minutes earlier or later; load is the engine's daily shape with AR(1) noise.
Everything is precomputed as arrays, so stepping thousands of sites costs an index, not a model.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from envelopes.forecast import load_shape, local_hours

#: System losses (soiling, temperature, wiring, inverter): output share of rated at 1000 W/m2.
PERFORMANCE_RATIO = 0.85


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
