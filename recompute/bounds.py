"""What the engine believes of the values devices (and, rarely, people) put in the store.

Door checks refuse most bad input, but the engine must not depend on them: a value stored by an older
version, typed into the database, or past a check with a gap reaches it all the same. Every such value
goes through one of these before any arithmetic, so a NaN, an infinity, a reading dated in the year
292 billion or a rating of 10^40 W can cost at most that one site its dynamic envelope, never the run.
Pure functions: no store, no clock.
"""

from __future__ import annotations

import math

#: A device rating (rtgMaxW, setMaxW) above this is not believed: no DER connection point nears 1 GW.
MAX_RATING_W = 1e9
#: A reading's power-of-ten multiplier outside this range cannot describe a DER site's power.
MAX_POWER_OF_TEN = 12
#: Every site may read at least this much (W) before its telemetry counts as implausible.
MIN_PLAUSIBLE_W = 10_000.0


def rating_w(value: float | None) -> float | None:
    """A reported rating in watts if believable (finite, positive, at most `MAX_RATING_W`), else None."""
    if value is None:
        return None
    try:
        w = float(value)
    except (TypeError, ValueError):
        return None
    return w if math.isfinite(w) and 0 < w <= MAX_RATING_W else None


def plausible_w(max_export_w: float, max_import_w: float, factor: float) -> float:
    """The largest net power (W) a site's reading may show: `factor` times its agreed maxima."""
    return max(factor * max(max_export_w, max_import_w), MIN_PLAUSIBLE_W)


def reading_w(value: int, power_of_ten: int) -> float | None:
    """value x 10^power_of_ten in watts, or None if it cannot be a real power."""
    try:
        p = int(power_of_ten)
        if abs(p) > MAX_POWER_OF_TEN:
            return None
        w = float(value) * 10.0**p
    except (TypeError, ValueError, OverflowError):
        return None
    return w if math.isfinite(w) else None


def reading_problem(
    time_s: int,
    received_s: int,
    watts: float | None,
    *,
    future_tolerance_s: int,
    plausible_max_w: float,
) -> str | None:
    """Why a reading cannot be trusted (None if it can).

    A reading dated after the server received it (beyond a clock-skew tolerance) comes from a wrong
    or lying clock, and one whose power is impossible for the site from a broken meter or device: in
    both cases nothing else the device reports is trusted either.
    """
    ahead_s = int(time_s) - int(received_s)
    if ahead_s > future_tolerance_s:
        return f"a reading dated {ahead_s} s after the server received it (tolerance {future_tolerance_s} s)"
    if watts is None:
        return "a reading whose value or multiplier is no real power"
    if abs(watts) > plausible_max_w:
        return f"a reading of {watts:.3g} W, beyond the {plausible_max_w:.3g} W the site could carry"
    return None


def effective_time_s(time_s: int, received_s: int) -> int:
    """When a reading describes at the latest: its own date, but never after the server received it."""
    return min(int(time_s), int(received_s))
