"""The sweep in derive_states gives exactly what the 2030.5 rule read literally gives, only faster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from gridshare.server.shared.control_status import (
    ACTIVE,
    CANCELLED,
    CANCELLED_RANDOMIZED,
    SCHEDULED,
    SUPERSEDED,
    ControlState,
    ScheduledControl,
    derive_states,
)


@dataclass(eq=False)
class C:
    id: int | str
    mrid: str
    program_id: int
    site_id: int
    creation_s: int
    start_s: int
    duration_s: int
    cancelled_s: int | None = None
    cancel_randomized: bool = False


def _order(c: ScheduledControl) -> tuple[int, int, int, str]:
    return (c.creation_s, 1, c.id, "") if isinstance(c.id, int) else (c.creation_s, 0, 0, c.mrid)


def reference_states(controls: Sequence[ScheduledControl], now_s: float) -> list[ControlState]:
    """IEEE 2030.5 §10.2 as written: compare every control with every other of its program and site."""
    live = [c for c in controls if c.start_s + c.duration_s > now_s]
    states = []
    for c in live:
        if c.cancelled_s is not None:
            status = CANCELLED_RANDOMIZED if c.cancel_randomized else CANCELLED
            states.append(ControlState(c, status, c.cancelled_s, False))
            continue
        superseders = [
            o
            for o in live
            if o is not c
            and (o.program_id, o.site_id) == (c.program_id, c.site_id)
            and o.cancelled_s is None
            and _order(o) > _order(c)
            and o.start_s < c.start_s + c.duration_s
            and c.start_s < o.start_s + o.duration_s
        ]
        if superseders:
            states.append(ControlState(c, SUPERSEDED, min(o.creation_s for o in superseders), True))
        elif c.start_s <= now_s:
            states.append(ControlState(c, ACTIVE, c.start_s, False))
        else:
            states.append(ControlState(c, SCHEDULED, c.creation_s, False))
    states.sort(
        key=lambda s: (s.control.start_s, -s.control.creation_s, tuple(-ord(x) for x in s.control.mrid))
    )
    return states


@st.composite
def controls(draw: st.DrawFn) -> C:
    envelope_block = draw(st.booleans())
    mrid = draw(st.sampled_from(["A1", "A2", "B1", "FF", "A"]))
    return C(
        id=mrid if envelope_block else draw(st.integers(1, 6)),
        mrid=mrid,
        program_id=draw(st.integers(1, 2)),
        site_id=draw(st.integers(1, 2)),
        creation_s=draw(st.integers(0, 6)),
        start_s=draw(st.integers(0, 20)),
        duration_s=draw(st.sampled_from([0, 1, 2, 3, 5, 8, 13])),
        cancelled_s=draw(st.none() | st.integers(0, 10)),
        cancel_randomized=draw(st.booleans()),
    )


def _flat(states: list[ControlState]) -> list[tuple[int, int, int, bool]]:
    return [(id(s.control), s.status, s.status_time_s, s.potentially_superseded) for s in states]


@settings(max_examples=1500, deadline=None)
@given(st.lists(controls(), max_size=30), st.integers(-1, 25))
def test_sweep_matches_pairwise_rule(found: list[C], now_s: int) -> None:
    assert _flat(derive_states(found, now_s)) == _flat(reference_states(found, now_s))


def test_a_day_of_republished_blocks_is_still_right() -> None:
    """Every 5-minute block republished 24 times over a day: thousands of controls in one group."""
    blocks = [
        C(f"{version:02d}{start:04d}", f"{version:02d}{start:04d}", 1, 1, version * 60, start * 300, 300)
        for version in range(24)
        for start in range(288)
    ]
    states = derive_states(blocks, now_s=-1)  # its speed: bench/bench_control_status.py
    newest = {s.control.start_s: s for s in states if s.control.creation_s == 23 * 60}
    assert all(s.status == SCHEDULED for s in newest.values()) and len(newest) == 288
    older = [s for s in states if s.control.creation_s < 23 * 60]
    # each older version is superseded from the moment the next version was created
    assert all(s.status == SUPERSEDED and s.status_time_s == s.control.creation_s + 60 for s in older)
