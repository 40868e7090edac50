"""DERControl event status, derived from the clock at request time (IEEE 2030.5 §10.2 event rules).

Nothing stores "active" or "expired": a control's status depends only on its interval, its
cancellation, newer overlapping controls in the same program, and the time the client asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class ScheduledControl(Protocol):
    id: int
    mrid: str
    program_id: int
    site_id: int
    creation_s: int
    start_s: int
    duration_s: int
    cancelled_s: int | None
    cancel_randomized: bool


SCHEDULED, ACTIVE, CANCELLED, CANCELLED_RANDOMIZED, SUPERSEDED = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class ControlState:
    control: ScheduledControl
    status: int
    status_time_s: int
    potentially_superseded: bool


def _newer(a: ScheduledControl, b: ScheduledControl) -> bool:
    """True when `a` was created after `b`.

    creationTime has one-second resolution, so two controls written in the same second are told apart
    by their row id, which follows insertion order (mRIDs are random and say nothing about order).
    """
    return _creation_order(a) > _creation_order(b)


def _creation_order(c: ScheduledControl) -> tuple[int, int, int, str]:
    """Operator controls (integer row ids) order by id; published envelope blocks (whose id is their
    mRID) by mRID, after operator controls of the same second."""
    if isinstance(c.id, int):
        return (c.creation_s, 1, c.id, "")
    return (c.creation_s, 0, 0, c.mrid)


def _overlap(a: ScheduledControl, b: ScheduledControl) -> bool:
    return a.start_s < b.start_s + b.duration_s and b.start_s < a.start_s + a.duration_s


def derive_states(controls: Sequence[ScheduledControl], now_s: float) -> list[ControlState]:
    """States of every control not yet expired, in 2030.5 list order.

    Supersession only applies within one program and one site (a newer, uncancelled, overlapping
    control supersedes an older one); cancelled and superseded controls stay visible until their end.
    Order: interval start ascending, creation time descending, mRID descending (design notes §1).
    """
    live = [c for c in controls if c.start_s + c.duration_s > now_s]
    states: list[ControlState] = []
    by_group: dict[tuple[int, int], list[ScheduledControl]] = {}
    for c in live:
        by_group.setdefault((c.program_id, c.site_id), []).append(c)
    for c in live:
        if c.cancelled_s is not None:
            status = CANCELLED_RANDOMIZED if c.cancel_randomized else CANCELLED
            states.append(ControlState(c, status, c.cancelled_s, False))
            continue
        superseders = [
            o
            for o in by_group[(c.program_id, c.site_id)]
            if o is not c and o.cancelled_s is None and _newer(o, c) and _overlap(o, c)
        ]
        if superseders:
            first = min(superseders, key=lambda o: o.creation_s)
            states.append(ControlState(c, SUPERSEDED, first.creation_s, True))
        elif c.start_s <= now_s:
            states.append(ControlState(c, ACTIVE, c.start_s, False))
        else:
            states.append(ControlState(c, SCHEDULED, c.creation_s, False))
    states.sort(key=lambda s: (s.control.start_s, -s.control.creation_s, _desc(s.control.mrid)))
    return states


def _desc(mrid: str) -> tuple[int, ...]:
    return tuple(-ord(ch) for ch in mrid)


def next_change_s(controls: Sequence[ScheduledControl], now_s: float) -> float:
    """The earliest future time at which any control's derived status changes (for render caches)."""
    upcoming = [t for c in controls for t in (c.start_s, c.start_s + c.duration_s) if t > now_s]
    return min(upcoming, default=float("inf"))
