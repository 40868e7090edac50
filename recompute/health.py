"""Are the inputs fresh enough to publish envelopes from? (Never publish envelopes from bad data.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class StaleInput:
    kind: str  # "stale telemetry" | "stale forecast"
    detail: str


def _at(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stale_telemetry(now_s: int, newest_s: int | None, max_age_s: int) -> StaleInput | None:
    """Sites have posted telemetry before, but nothing recent: the metering feed has stopped.

    A feeder whose sites never posted any runs on profiles by design, which is not stale. One quiet
    device is not either: its forecast falls back to its profile; this is about the feed as a whole.
    """
    if max_age_s <= 0 or newest_s is None or now_s - newest_s <= max_age_s:
        return None
    return StaleInput(
        "stale telemetry",
        f"newest reading from {_at(newest_s)}, {now_s - newest_s} s old (limit {max_age_s} s)",
    )


def stale_forecast(now_s: int, issued_s: float | None, max_age_s: int) -> StaleInput | None:
    """The forecast the envelopes would rest on was issued too long ago."""
    if max_age_s <= 0 or issued_s is None or now_s - issued_s <= max_age_s:
        return None
    return StaleInput(
        "stale forecast",
        f"issued {_at(issued_s)}, {now_s - issued_s:.0f} s old (limit {max_age_s} s)",
    )
