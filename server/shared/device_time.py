"""Times a device sends are its claim, checked against the server's clock before anything trusts them.

A reading dated years ahead would make a dead telemetry feed look fresh, and one near 2^63 breaks date
arithmetic downstream; a reading from a device whose clock reset to 1970 is not telemetry at all. Both
are refused at the door with a 400 naming the field (`device_time_future_tolerance_s`,
`device_time_max_age_s`), so the client learns its clock is wrong and the store never holds them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gridshare.core.settings import Settings
from gridshare.server.wire.errors import InvalidValues


def _when(value_s: int) -> str:
    try:
        return datetime.fromtimestamp(value_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{value_s} s"


def time_problem(field: str, value_s: int, now_s: int, settings: Settings) -> str | None:
    """Why `value_s` (epoch seconds a device sent in `field`) cannot be trusted, or None."""
    ahead_s = value_s - now_s
    if ahead_s > settings.device_time_future_tolerance_s:
        return (
            f"{field} {_when(value_s)} is {ahead_s} s ahead of the server's clock ({_when(now_s)}); "
            f"at most {settings.device_time_future_tolerance_s} s ahead is accepted: "
            "check the device's clock against /tm"
        )
    if -ahead_s > settings.device_time_max_age_s:
        return (
            f"{field} {_when(value_s)} is {-ahead_s} s behind the server's clock ({_when(now_s)}); "
            f"readings older than {settings.device_time_max_age_s} s are not accepted"
        )
    return None


def check_device_time(field: str, value_s: int, now_s: int, settings: Settings) -> None:
    """Raise a 400 naming `field` when the time it carries is outside the accepted window."""
    reason = time_problem(field, value_s, now_s, settings)
    if reason is not None:
        raise InvalidValues(400, reason)
