"""The device-side 2030.5 event rules the simulator applies (sim/events.py): quick, no server."""

from __future__ import annotations

from gridshare.sim.events import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    RECEIVED,
    RSP_CANCELLED,
    STARTED,
    SUPERSEDED,
    ControlBase,
    Event,
    EventBook,
)

T0 = 1_800_000_000
P1, P2 = "/edev/1/derp/1", "/edev/1/derp/2"


def ev(mrid: str, start: int, duration: int, export_w: float | None = None, **kw) -> Event:  # type: ignore[no-untyped-def]
    fields = {"program": P1, "primacy": 1, "creation_s": T0 - 100, "status": 0}
    fields.update(kw)
    return Event(
        mrid, start_s=start, duration_s=duration, base=ControlBase(export_limit_w=export_w), **fields
    )


def book(delay: float = 0.0) -> EventBook:
    b = EventBook("device-1", delay)
    b.set_default(P1, 1, ControlBase(export_limit_w=1500.0, import_limit_w=None))
    return b


def test_events_apply_over_their_interval_and_defaults_fill_the_rest() -> None:
    b = book()
    b.update_program(P1, [ev("A", T0 + 100, 300, 4000.0)], seen_s=T0)
    assert b.control_at(T0 + 50).export_limit_w == 1500.0  # before: the default
    assert b.control_at(T0 + 100).export_limit_w == 4000.0  # at start, known ahead: no delay
    assert b.control_at(T0 + 399).export_limit_w == 4000.0
    assert b.control_at(T0 + 400).export_limit_w == 1500.0  # end is exclusive


def test_newest_event_in_a_program_supersedes_older_overlapping_ones() -> None:
    b = book()
    older = ev("OLD", T0, 600, 5000.0, creation_s=T0 - 200)
    newer = ev("NEW", T0 + 300, 600, 2000.0, creation_s=T0 - 10)
    b.update_program(P1, [older, newer], seen_s=T0 - 5)
    assert b.control_at(T0 + 100).export_limit_w == 5000.0
    assert b.control_at(T0 + 400).export_limit_w == 2000.0


def test_lower_primacy_value_wins_per_field_across_programs() -> None:
    b = book()
    b.set_default(P2, 2, ControlBase(export_limit_w=9000.0, import_limit_w=7000.0))
    b.update_program(P1, [ev("A", T0, 600, 3000.0)], seen_s=T0 - 1)
    low_priority = Event(
        "B", P2, 2, T0 - 1, T0, 600, ACTIVE, ControlBase(export_limit_w=100.0, import_limit_w=2500.0)
    )
    b.update_program(P2, [low_priority], seen_s=T0 - 1)
    control = b.control_at(T0 + 10)
    assert control.export_limit_w == 3000.0  # program 1 (primacy 1) sets it
    assert control.import_limit_w == 2500.0  # only program 2 sets it


def test_randomised_start_is_stable_and_within_bounds() -> None:
    e = ev("R", T0 + 1000, 600, 1000.0, randomize_start_s=120)
    b1, b2 = book(), book()
    b1.update_program(P1, [e], seen_s=T0)
    b2.update_program(P1, [e], seen_s=T0)
    starts = [t for t in range(T0 + 990, T0 + 1130) if b1.control_at(t).export_limit_w == 1000.0]
    assert starts and T0 + 1000 <= starts[0] <= T0 + 1120
    assert starts[0] == next(
        t for t in range(T0 + 990, T0 + 1130) if b2.control_at(t).export_limit_w == 1000.0
    )
    other = EventBook("device-2")
    other.update_program(P1, [e], seen_s=T0)
    # a different device draws its own offset (almost surely a different one)
    assert any(
        other.control_at(t).export_limit_w != b1.control_at(t).export_limit_w
        for t in range(T0 + 1000, T0 + 1121)
    )


def test_an_event_learned_late_applies_after_the_response_delay() -> None:
    b = book(delay=5.0)
    b.update_program(P1, [ev("LATE", T0 - 600, 1200, 800.0)], seen_s=T0)
    assert b.control_at(T0 + 4).export_limit_w == 1500.0
    assert b.control_at(T0 + 5).export_limit_w == 800.0


def test_cancellation_and_disappearance_stop_an_event_after_the_delay() -> None:
    b = book(delay=2.0)
    b.update_program(
        P1, [ev("C", T0, 3600, 700.0), ev("D", T0, 3600, 900.0, program=P2, primacy=2)], seen_s=T0 - 1
    )
    b.update_program(P1, [ev("C", T0, 3600, 700.0, status=CANCELLED)], seen_s=T0 + 100)
    assert b.control_at(T0 + 101).export_limit_w == 700.0
    assert b.control_at(T0 + 102).export_limit_w == 900.0  # program 2's event now shows through
    b.update_program(P2, [], seen_s=T0 + 200)  # gone from the server's list: withdrawn
    assert b.control_at(T0 + 203).export_limit_w == 1500.0


def test_events_already_superseded_when_first_seen_never_apply() -> None:
    b = book()
    b.update_program(P1, [ev("S", T0, 600, 100.0, status=SUPERSEDED)], seen_s=T0 + 10)
    assert b.control_at(T0 + 20).export_limit_w == 1500.0


def test_fallback_ignores_events_and_applies_the_defaults() -> None:
    b = book()
    b.update_program(P1, [ev("A", T0, 600, 4000.0)], seen_s=T0 - 1)
    assert b.control_at(T0 + 10, fallback=True).export_limit_w == 1500.0
    assert b.control_at(T0 + 10).export_limit_w == 4000.0


def test_responses_follow_response_required_bits_once_each() -> None:
    b = book()
    b.update_program(
        P1,
        [ev("A", T0 + 10, 60, 4000.0, response_required=3), ev("Q", T0 + 10, 60, 3000.0, program=P2)],
        seen_s=T0,
    )
    assert [s for _, s in b.due_responses(T0)] == [RECEIVED]
    b.mark_responded("A", RECEIVED)
    assert [s for _, s in b.due_responses(T0 + 20)] == [STARTED]
    b.mark_responded("A", STARTED)
    assert [s for _, s in b.due_responses(T0 + 80)] == [COMPLETED]
    b.mark_responded("A", COMPLETED)
    assert b.due_responses(T0 + 90) == []
    b.update_program(
        P2, [ev("Z", T0 + 500, 60, 1.0, program=P2, response_required=2, status=CANCELLED)], T0 + 95
    )
    assert [(e.mrid, s) for e, s in b.due_responses(T0 + 96)] == [("Z", RSP_CANCELLED)]
