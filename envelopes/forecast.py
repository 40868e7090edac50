"""Per-interval forecasts of uncontrolled load and generation.

Two sources: profiles (a daily shape scaled by a peak: clear-sky PV from the sun's elevation,
residential/commercial load shapes by local hour) and persistence of the latest telemetry,
blended back to the profile over an hour or so. A forecast records when it was issued so a
caller can refuse to build envelopes on stale data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from gridshare.grid.localtime import local_fractional_hours
from gridshare.grid.network import Network, Site

# Hourly load shapes (fraction of peak) by local hour, 00:00..23:00; interpolated linearly.
# Residential: overnight trough, a morning shoulder and the evening peak around 18:00-19:00.
# Commercial: business-hours plateau. Flat: constant (e.g. a pump or a data logger).
# fmt: off
LOAD_SHAPES: dict[str, tuple[float, ...]] = {
    "residential": (
        0.40, 0.35, 0.32, 0.31, 0.32, 0.38, 0.55, 0.70, 0.66, 0.55, 0.48, 0.45,
        0.44, 0.44, 0.46, 0.52, 0.65, 0.85, 1.00, 0.98, 0.88, 0.74, 0.60, 0.48,
    ),
    "commercial": (
        0.30, 0.30, 0.30, 0.30, 0.30, 0.35, 0.50, 0.75, 0.92, 1.00, 1.00, 1.00,
        0.98, 1.00, 1.00, 0.98, 0.92, 0.78, 0.60, 0.48, 0.40, 0.35, 0.32, 0.30,
    ),
    "flat": (1.0,) * 24,
}
# fmt: on


def _epochs(start: datetime, interval_s: int, n_intervals: int) -> np.ndarray:
    if start.tzinfo is None:
        raise ValueError("start needs a time zone (use UTC)")
    return int(start.timestamp()) + interval_s * np.arange(n_intervals, dtype=np.int64)


def solar_elevation_sin(epoch_s: np.ndarray, latitude_deg: float, longitude_deg: float) -> np.ndarray:
    """sin(solar elevation) from day of year and solar time; the equation of time (minutes) is ignored."""
    days = epoch_s / 86400.0
    day_of_year = (days % 365.2422) + 1.0  # close enough to the calendar for a declination
    declination = math.radians(23.44) * np.sin(2.0 * math.pi * (284.0 + day_of_year) / 365.0)
    solar_hours = ((epoch_s % 86400) / 3600.0 + longitude_deg / 15.0) % 24.0
    hour_angle = np.radians(15.0 * (solar_hours - 12.0))
    lat = math.radians(latitude_deg)
    return np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(hour_angle)


def pv_shape(epoch_s: np.ndarray, latitude_deg: float, longitude_deg: float) -> np.ndarray:
    """Clear-sky PV output as a fraction of `pv_w`, 1.0 at midsummer solar noon.

    Output follows sin(elevation)^1.2 (air mass and incidence losses flatten mornings and evenings).
    """
    sin_el = np.clip(solar_elevation_sin(epoch_s, latitude_deg, longitude_deg), 0.0, None)
    best = math.cos(math.radians(max(abs(latitude_deg) - 23.44, 0.0)))  # sin of the highest noon elevation
    return np.clip((sin_el / best) ** 1.2, 0.0, 1.0)


def local_hours(epoch_s: np.ndarray, tz: str) -> np.ndarray:
    """Fractional local clock hour of each instant (DST-aware, vectorised: grid/localtime.py)."""
    return local_fractional_hours(epoch_s, tz)


def load_shape(hours: np.ndarray, kind: str) -> np.ndarray:
    """Fraction of peak load at fractional local hours; raises KeyError naming the known shapes."""
    if kind not in LOAD_SHAPES:
        raise KeyError(f"unknown load profile {kind!r} (known: {', '.join(sorted(LOAD_SHAPES))})")
    table = np.asarray(LOAD_SHAPES[kind] + LOAD_SHAPES[kind][:1])
    return np.interp(hours, np.arange(25.0), table)


@dataclass(frozen=True)
class Forecast:
    """Load and generation (W, >= 0) per interval for a set of ids (sites and `node:<name>` groups)."""

    issued_at: datetime
    start: datetime
    interval_s: int
    ids: tuple[str, ...]
    load_w: np.ndarray  # (n_intervals, n_ids)
    generation_w: np.ndarray  # (n_intervals, n_ids)

    def __post_init__(self) -> None:
        shape = (self.load_w.shape[0], len(self.ids))
        if self.load_w.shape != shape or self.generation_w.shape != shape:
            raise ValueError(
                f"forecast arrays must be (n_intervals, {len(self.ids)}) for ids {self.ids[:3]}..."
            )
        if self.issued_at.tzinfo is None or self.start.tzinfo is None:
            raise ValueError("issued_at and start need a time zone")
        if self.interval_s <= 0:
            raise ValueError("interval_s must be > 0")

    @property
    def n_intervals(self) -> int:
        return int(self.load_w.shape[0])

    @property
    def net_export_w(self) -> np.ndarray:
        """Generation minus load: what the id pushes into the network."""
        return self.generation_w - self.load_w

    def age_s(self, now: datetime) -> float:
        return (now - self.issued_at).total_seconds()

    def is_stale(self, now: datetime, max_age_s: float) -> bool:
        """True when the forecast is older than `max_age_s`: the caller should fall back."""
        return self.age_s(now) > max_age_s

    def covers(self, epoch_s: np.ndarray) -> bool:
        first = int(self.start.timestamp())
        return bool(np.all(epoch_s >= first) and np.all(epoch_s < first + self.interval_s * self.n_intervals))

    def on_grid(self, epoch_s: np.ndarray, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Load and generation for `ids` at interval starts `epoch_s` (value of the containing interval).

        Raises KeyError for unknown ids and ValueError for instants the forecast does not cover.
        """
        if not self.covers(epoch_s):
            raise ValueError(
                f"forecast issued {self.issued_at.isoformat()} covers {self.start.isoformat()} + "
                f"{self.n_intervals} x {self.interval_s} s, not the requested horizon"
            )
        rows = (epoch_s - int(self.start.timestamp())) // self.interval_s
        index = {name: i for i, name in enumerate(self.ids)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise KeyError(f"forecast has no series for {', '.join(missing[:5])}")
        cols = np.array([index[i] for i in ids], dtype=np.intp)
        return self.load_w[np.ix_(rows, cols)], self.generation_w[np.ix_(rows, cols)]


@dataclass(frozen=True)
class ProfileSpec:
    """Profile parameters for one id: peaks in W and the load shape's name."""

    pv_w: float = 0.0
    load_w: float = 0.0
    load_profile: str = "residential"


def profile_forecast(
    specs: Mapping[str, ProfileSpec],
    start: datetime,
    interval_s: int,
    n_intervals: int,
    *,
    tz: str,
    latitude_deg: float,
    longitude_deg: float,
    issued_at: datetime,
) -> Forecast:
    """Shape x peak for every id, evaluated at interval midpoints (closer to the interval mean).

    `issued_at` is the caller's "now" (the engine's clock), never the wall clock read here: a forecast's
    age decides whether envelopes may be published from it.
    """
    epochs = _epochs(start, interval_s, n_intervals) + interval_s // 2
    pv = pv_shape(epochs, latitude_deg, longitude_deg)
    hours = local_hours(epochs, tz)
    shapes = {kind: load_shape(hours, kind) for kind in {s.load_profile for s in specs.values()}}
    ids = tuple(specs)
    load_w = np.zeros((n_intervals, len(ids)))
    gen_w = np.zeros((n_intervals, len(ids)))
    for i, name in enumerate(ids):
        spec = specs[name]
        load_w[:, i] = spec.load_w * shapes[spec.load_profile]
        gen_w[:, i] = spec.pv_w * pv
    return Forecast(
        issued_at=issued_at,
        start=start,
        interval_s=interval_s,
        ids=ids,
        load_w=load_w,
        generation_w=gen_w,
    )


@dataclass(frozen=True)
class Telemetry:
    """The latest measurement of one id's load and generation."""

    measured_at: datetime
    load_w: float
    generation_w: float


def persistence_forecast(
    base: Forecast, telemetry: Mapping[str, Telemetry], blend_s: float = 3600.0
) -> Forecast:
    """Persist the latest measurements, fading back to `base` (a profile) over `blend_s`.

    Generation persists as a clear-sky index (measured / profile), so a cloudy morning stays
    cloudy in proportion rather than freezing at one wattage; load persists as an offset.
    Issued at the newest measurement: the data are only as fresh as the telemetry.
    """
    if not telemetry:
        return base
    load = base.load_w.copy()
    gen = base.generation_w.copy()
    mids = _epochs(base.start, base.interval_s, base.n_intervals) + base.interval_s // 2
    index = {name: i for i, name in enumerate(base.ids)}
    for name, reading in telemetry.items():
        if name not in index:
            raise KeyError(f"telemetry for {name!r}, which the forecast does not cover")
        col = index[name]
        age = mids - reading.measured_at.timestamp()
        weight = (
            np.clip(1.0 - np.maximum(age, 0.0) / blend_s, 0.0, 1.0) if blend_s > 0 else np.ones(len(mids))
        )
        profile_now = gen[0, col]
        if profile_now > 0.01 * max(float(gen[:, col].max()), 1.0):
            index_now = min(max(reading.generation_w / profile_now, 0.0), 1.5)
            gen[:, col] = gen[:, col] * (weight * index_now + (1.0 - weight))
        else:
            gen[:, col] = weight * max(reading.generation_w, 0.0) + (1.0 - weight) * gen[:, col]
        load[:, col] = np.maximum(load[:, col] + weight * (reading.load_w - load[0, col]), 0.0)
    newest = max(r.measured_at for r in telemetry.values())
    return Forecast(
        issued_at=newest,
        start=base.start,
        interval_s=base.interval_s,
        ids=base.ids,
        load_w=load,
        generation_w=gen,
    )


def telemetry_over_profiles(
    network: Network,
    sites: Sequence[Site],
    telemetry: Mapping[str, Telemetry],
    isolated_nodes: frozenset[str],
    start: datetime,
    interval_s: int,
    n_intervals: int,
    issued_at: datetime,
) -> Forecast | None:
    """The engine's own forecast: each reporting site's latest telemetry carried forward over its
    profile (None without telemetry). Sites cut off by an outage now get none: they carry no flow.

    One definition for the recomputation and for a network computed on a worker (compute/task.py),
    so the two give the same envelopes for the same inputs.
    """
    if not telemetry:
        return None
    specs = {
        s.id: ProfileSpec(s.pv_w, s.load_w, s.load_profile)
        for s in sites
        if s.id in telemetry and s.node not in isolated_nodes
    }
    base = profile_forecast(
        specs,
        start,
        interval_s,
        n_intervals,
        tz=network.timezone,
        latitude_deg=network.latitude_deg,
        longitude_deg=network.longitude_deg,
        issued_at=issued_at,
    )
    return persistence_forecast(base, {k: v for k, v in telemetry.items() if k in specs})
