"""Did a site keep to its limits? Measured net power against the limit in force, with the device's allowance.

A device cannot follow a lower limit instantly. After the limit in force drops (at the later of the
block's start and its publication), the device is allowed the old limit for `response_s` (it learns of
the change at its next DERControlList poll), then a ramp down at `ramp_w_per_s` (its DefaultDERControl
setGradW, the ramp CSIP-AUS gives it), and a measurement tolerance on top. A reading above what that
allows is a breach; a raised limit is allowed at once (ramping up slowly is never unsafe).

Readings are grouped into envelope intervals: an interval complies when none of its readings breach.
Consecutive breaching intervals in one direction form one breach, reported with when, by how much
(largest excess, W) and the energy over the limit (Wh: each interval's mean excess over its readings,
readings within the allowance counting zero, times the interval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridshare.performance.timeline import LimitTimeline


@dataclass(frozen=True)
class Breach:
    direction: str  # export | import
    start_s: int
    end_s: int
    max_excess_w: float
    energy_over_wh: float
    limit_w: float  # the limit in force at the worst reading
    measured_w: float  # the worst reading (in the breach's direction)


@dataclass(frozen=True)
class Compliance:
    readings: int
    intervals: int  # envelope intervals with at least one reading
    compliant_intervals: int
    breaches: tuple[Breach, ...]

    @property
    def share_compliant(self) -> float | None:
        return None if self.intervals == 0 else self.compliant_intervals / self.intervals

    @property
    def worst_excess_w(self) -> float:
        return max((b.max_excess_w for b in self.breaches), default=0.0)


def allowed_limits(
    timeline: LimitTimeline, t_s: np.ndarray, response_s: float, ramp_w_per_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(export W, import W) a device may be at at each time, given the limits and its allowance."""
    t = np.asarray(t_s, dtype=np.int64)
    now_export, now_import = timeline.at(t)
    was_export, was_import = timeline.before_step(t)
    since = t - timeline.step_times(t) - response_s  # seconds the device has been ramping
    out = []
    with np.errstate(invalid="ignore"):
        drop = np.where(since > 0, ramp_w_per_s * np.maximum(since, 0), 0.0)  # W ramped down so far
        for now, was in ((now_export, was_export), (now_import, was_import)):
            # Down by `drop` from the old limit, never below the new one. From no limit at all there is
            # nothing to ramp from: the new limit applies once the response time is over.
            ramped = np.where(np.isinf(was) | (drop >= was - now), now, was - drop)
            out.append(np.where(now < was, np.where(since < 0, was, ramped), now))
    return out[0], out[1]


def assess(
    t_s: np.ndarray,
    export_w: np.ndarray,
    timeline: LimitTimeline,
    interval_s: int,
    *,
    response_s: float,
    ramp_w_per_s: float,
    tolerance_w: float,
) -> Compliance:
    """Compliance of readings `export_w` (net export at the connection point, W; import negative)."""
    t = np.asarray(t_s, dtype=np.int64)
    measured = np.asarray(export_w, dtype=float)
    if len(t) == 0:
        return Compliance(0, 0, 0, ())
    allowed_export, allowed_import = allowed_limits(timeline, t, response_s, ramp_w_per_s)
    limit_export, limit_import = timeline.at(t)
    excess = {
        "export": measured - allowed_export - tolerance_w,
        "import": -measured - allowed_import - tolerance_w,
    }
    slot = t // interval_s
    slots = np.unique(slot)
    bad_slots = np.unique(slot[(excess["export"] > 0) | (excess["import"] > 0)])
    breaches: list[Breach] = []
    for direction, over in excess.items():
        limit = limit_export if direction == "export" else limit_import
        shown = measured if direction == "export" else -measured
        breaching = np.unique(slot[over > 0])
        if len(breaching) == 0:
            continue
        runs = np.split(breaching, np.flatnonzero(np.diff(breaching) > 1) + 1)
        for run in runs:
            in_run = (slot >= run[0]) & (slot <= run[-1]) & (over > 0)
            worst = np.flatnonzero(in_run)[np.argmax(over[in_run])]
            beyond = np.where(over > 0, over + tolerance_w, 0.0)  # W above the allowance, breaching readings
            energy = sum(float(np.mean(beyond[slot == s])) * interval_s / 3600.0 for s in run)
            breaches.append(
                Breach(
                    direction=direction,
                    start_s=int(run[0] * interval_s),
                    end_s=int((run[-1] + 1) * interval_s),
                    max_excess_w=float(over[worst] + tolerance_w),
                    energy_over_wh=energy,
                    limit_w=float(limit[worst]),
                    measured_w=float(shown[worst]),
                )
            )
    breaches.sort(key=lambda b: b.start_s)
    return Compliance(len(t), len(slots), len(slots) - len(bad_slots), tuple(breaches))
