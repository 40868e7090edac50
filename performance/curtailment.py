"""Curtailment: the energy a site's envelope held back, per day and against its guarantee.

Per envelope interval the site's potential is what it could have exported (its forecast generation
less its load, at most its agreed maximum export) or wanted to import (load less generation, at most
its maximum import). The forecast is the engine's profile forecast for that interval: clear-sky PV from
solar geometry at the network's location, and the site's load profile. Curtailment is the potential
above the limit in force:

* without telemetry for the interval: potential - limit, where positive (a forecast-only estimate);
* with telemetry: the same, but only when the site was at its limit (measured within the tolerance of
  it or above): a site well below its limit was not held back, whatever the forecast said.

Energy is W x interval / 3600 (Wh). A guarantee caps annual curtailment at a share of the potential
export energy; every kWh beyond the cap is owed at the agreed price (see grid.agreements).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np

from gridshare.grid.agreements import CurtailmentGuarantee


def curtailed_w(
    limit_w: np.ndarray, potential_w: np.ndarray, measured_w: np.ndarray, tolerance_w: float
) -> np.ndarray:
    """Per interval, W held back in one direction. `measured_w` is NaN where no telemetry came in."""
    held = np.clip(np.asarray(potential_w, float) - np.asarray(limit_w, float), 0.0, None)
    measured = np.asarray(measured_w, dtype=float)
    at_limit = np.isnan(measured) | (measured >= np.asarray(limit_w, float) - tolerance_w)
    return np.where(at_limit, held, 0.0)


def local_day_ordinals(epoch_s: np.ndarray, tz: str) -> np.ndarray:
    """Local calendar day (date ordinal) of each time; one zone lookup per distinct quarter hour."""
    zone = ZoneInfo(tz)
    slot = epoch_s // 900  # every real UTC offset is a whole number of quarter hours
    unique, inverse = np.unique(slot, return_inverse=True)
    ordinals = np.array(
        [datetime.fromtimestamp(int(u) * 900, UTC).astimezone(zone).date().toordinal() for u in unique],
        dtype=np.int64,
    )
    return ordinals[inverse]


@dataclass(frozen=True)
class DayLedger:
    day: date  # local date in the network's time zone
    intervals: int
    telemetry_intervals: int
    potential_export_kwh: float
    curtailed_export_kwh: float
    potential_import_kwh: float
    curtailed_import_kwh: float


def daily(
    starts_s: np.ndarray,
    interval_s: int,
    tz: str,
    potential_export_w: np.ndarray,
    curtailed_export_w: np.ndarray,
    potential_import_w: np.ndarray,
    curtailed_import_w: np.ndarray,
    has_telemetry: np.ndarray,
) -> list[DayLedger]:
    """Sum interval figures into local days (kWh)."""
    if len(starts_s) == 0:
        return []
    days = local_day_ordinals(np.asarray(starts_s, dtype=np.int64), tz)
    kwh = interval_s / 3600.0 / 1000.0
    out = []
    for ordinal in np.unique(days):
        m = days == ordinal
        out.append(
            DayLedger(
                day=date.fromordinal(int(ordinal)),
                intervals=int(m.sum()),
                telemetry_intervals=int(np.count_nonzero(has_telemetry[m])),
                potential_export_kwh=float(potential_export_w[m].sum() * kwh),
                curtailed_export_kwh=float(curtailed_export_w[m].sum() * kwh),
                potential_import_kwh=float(potential_import_w[m].sum() * kwh),
                curtailed_import_kwh=float(curtailed_import_w[m].sum() * kwh),
            )
        )
    return out


@dataclass(frozen=True)
class Settlement:
    """Curtailment so far this year against the guarantee (None: the agreement carries none)."""

    curtailed_kwh: float
    potential_kwh: float
    curtailed_pct: float | None
    guarantee: CurtailmentGuarantee | None
    allowed_kwh: float | None  # the guaranteed share of the potential so far
    beyond_kwh: float  # curtailed beyond the guarantee
    owed: float  # beyond_kwh x price


def settle(curtailed_kwh: float, potential_kwh: float, guarantee: CurtailmentGuarantee | None) -> Settlement:
    pct = None if potential_kwh <= 0 else 100.0 * curtailed_kwh / potential_kwh
    if guarantee is None:
        return Settlement(curtailed_kwh, potential_kwh, pct, None, None, 0.0, 0.0)
    allowed = guarantee.max_annual_pct / 100.0 * potential_kwh
    beyond = max(0.0, curtailed_kwh - allowed)
    return Settlement(
        curtailed_kwh, potential_kwh, pct, guarantee, allowed, beyond, beyond * guarantee.price_per_kwh
    )
