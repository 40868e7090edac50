"""DERControl event status, derived from the clock at request time (IEEE 2030.5 §10.2 event rules).

Nothing stores "active" or "expired": a control's status depends only on its interval, its
cancellation, newer overlapping controls in the same program, and the time the client asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class ScheduledControl(Protocol):
    """What status derivation reads of a control (an operator's DerControl row, a published envelope
    block, the splicer's slot). Read-only, so frozen dataclasses qualify; `id` is a row id or an mRID.
    """

    @property
    def id(self) -> int | str: ...
    @property
    def mrid(self) -> str: ...
    @property
    def program_id(self) -> int: ...
    @property
    def site_id(self) -> int: ...
    @property
    def creation_s(self) -> int: ...
    @property
    def start_s(self) -> int: ...
    @property
    def duration_s(self) -> int: ...
    @property
    def cancelled_s(self) -> int | None: ...
    @property
    def cancel_randomized(self) -> bool: ...


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
    Supersession is found by a sweep (see `_superseded_at`), so a group of n controls costs
    O(n log n): every device's list is re-derived at each envelope block boundary.
    """
    live = [c for c in controls if c.start_s + c.duration_s > now_s]
    by_group: dict[tuple[int, int], list[ScheduledControl]] = {}
    for c in live:
        if c.cancelled_s is None:
            by_group.setdefault((c.program_id, c.site_id), []).append(c)
    superseded_at: dict[int, int] = {}
    for group in by_group.values():
        superseded_at.update(_superseded_at(group))
    states: list[ControlState] = []
    for c in live:
        if c.cancelled_s is not None:
            status = CANCELLED_RANDOMIZED if c.cancel_randomized else CANCELLED
            states.append(ControlState(c, status, c.cancelled_s, False))
        elif (first_s := superseded_at.get(id(c))) is not None:
            states.append(ControlState(c, SUPERSEDED, first_s, True))
        elif c.start_s <= now_s:
            states.append(ControlState(c, ACTIVE, c.start_s, False))
        else:
            states.append(ControlState(c, SCHEDULED, c.creation_s, False))
    states.sort(key=lambda s: (s.control.start_s, -s.control.creation_s, _desc(s.control.mrid)))
    return states


def _superseded_at(group: list[ScheduledControl]) -> dict[int, int]:
    """id(control) -> earliest creationTime of a newer overlapping control, for the superseded ones.

    `group` holds the uncancelled controls of one program and site. Controls are visited newest first
    (ties in creation order together, since they never supersede each other); each one asks a
    segment tree over the interval endpoints for the smallest creation time of the already-visited
    (newer) controls covering any part of its interval, then adds itself. Zero-length intervals,
    which the store never holds, are compared directly so the result matches the 2030.5 overlap rule.
    """
    positive = [c for c in group if c.duration_s > 0]
    points = sorted({t for c in positive for t in (c.start_s, c.start_s + c.duration_s)})
    index = {t: i for i, t in enumerate(points)}
    tree = _MinCoverTree(max(len(points) - 1, 1))
    zero_length = [c for c in group if c.duration_s <= 0]
    ordered = sorted(((_creation_order(c), c) for c in group), key=lambda kc: kc[0], reverse=True)
    found: dict[int, int] = {}
    i = 0
    while i < len(ordered):
        j = i + 1
        while j < len(ordered) and ordered[j][0] == ordered[i][0]:
            j += 1
        tied = [c for _, c in ordered[i:j]]
        for c in tied:
            if c.duration_s > 0:
                best = tree.query(index[c.start_s], index[c.start_s + c.duration_s])
                others = zero_length
            else:
                best, others = _INF, group
            for o in others:
                if o.creation_s < best and o is not c and _overlap(o, c) and _newer(o, c):
                    best = o.creation_s
            if best != _INF:
                found[id(c)] = int(best)
        for c in tied:
            if c.duration_s > 0:
                tree.cover(index[c.start_s], index[c.start_s + c.duration_s], c.creation_s)
        i = j
    return found


_INF = float("inf")


class _MinCoverTree:
    """Leaves are elementary segments between endpoints; `cover` lowers a range, `query` reads its min.

    `tag[n]` is the smallest value given to all of node n's range, `low[n]` the smallest value given to
    any part of it, so both operations touch O(log n) nodes without pushing anything down.
    """

    def __init__(self, leaves: int) -> None:
        self.size = 1 << (leaves - 1).bit_length()
        self.tag: list[float] = [_INF] * (2 * self.size)
        self.low: list[float] = [_INF] * (2 * self.size)

    def cover(self, lo: int, hi: int, value: float) -> None:
        """Apply `value` to leaves lo..hi-1."""
        tag, low = self.tag, self.low
        left, right = lo + self.size, hi + self.size
        first, last = left, right - 1
        while left < right:
            if left & 1:
                if value < tag[left]:
                    tag[left] = value
                if value < low[left]:
                    low[left] = value
                left += 1
            if right & 1:
                right -= 1
                if value < tag[right]:
                    tag[right] = value
                if value < low[right]:
                    low[right] = value
            left >>= 1
            right >>= 1
        for node in (first >> 1, last >> 1):
            while node:
                if value < low[node]:
                    low[node] = value
                node >>= 1

    def query(self, lo: int, hi: int) -> float:
        """The smallest value applied to any of leaves lo..hi-1."""
        tag, low = self.tag, self.low
        left, right = lo + self.size, hi + self.size
        first, last = left, right - 1
        best = _INF
        while left < right:
            if left & 1:
                if low[left] < best:
                    best = low[left]
                left += 1
            if right & 1:
                right -= 1
                if low[right] < best:
                    best = low[right]
            left >>= 1
            right >>= 1
        for node in (first >> 1, last >> 1):
            while node:
                if tag[node] < best:
                    best = tag[node]
                node >>= 1
        return best


#: Each UTF-8 byte b -> 255 - b: ascending order of the result is code points descending, a prefix
#: first, exactly as comparing tuples of negated code points (UTF-8 keeps code point order).
_INVERT = bytes(range(255, -1, -1))


def _desc(mrid: str) -> bytes:
    return mrid.encode("utf-8", "surrogatepass").translate(_INVERT)


def next_change_s(controls: Sequence[ScheduledControl], now_s: float) -> float:
    """The earliest future time at which any control's derived status changes (for render caches)."""
    upcoming = [t for c in controls for t in (c.start_s, c.start_s + c.duration_s) if t > now_s]
    return min(upcoming, default=float("inf"))
