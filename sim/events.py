"""Which control a device applies at an instant: the IEEE 2030.5 event rules, seen from the device.

The server derives event status for what it serves; a device must still decide for itself, because
it holds a cached schedule between polls and through outages. The rules applied here:

* an event runs over its interval, shifted by the device's own draw within `randomizeStart` and
  lengthened by one within `randomizeDuration` (drawn once per device and event, so it is stable);
* a device acts on what it learns `response_delay_s` after learning it: an event first seen after
  its start applies from first-seen + delay, and a cancellation, supersession or disappearance
  takes effect at seen + delay (a cancellation with randomisation at a random moment within it);
* within one program only the newest active event applies (supersession);
* across programs, each control field comes from the program with the lowest primacy value that
  sets it; fields no event sets come from the DefaultDERControls, again by primacy;
* in fallback (communications lost beyond the timeout) events are ignored and defaults apply.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, fields, replace

SCHEDULED, ACTIVE, CANCELLED, CANCELLED_RANDOMIZED, SUPERSEDED = 0, 1, 2, 3, 4
#: Response.status values (IEEE 2030.5 Table 27).
RECEIVED, STARTED, COMPLETED, OPTED_OUT, OPTED_IN, RSP_CANCELLED, RSP_SUPERSEDED = 1, 2, 3, 4, 5, 6, 7
_STOPPED = (CANCELLED, CANCELLED_RANDOMIZED, SUPERSEDED)


@dataclass(frozen=True)
class ControlBase:
    """The DERControlBase modes the simulated devices act on (watts; None = this control does not set it)."""

    export_limit_w: float | None = None
    import_limit_w: float | None = None
    generation_limit_w: float | None = None
    load_limit_w: float | None = None
    connect: bool | None = None
    energize: bool | None = None

    def merged_over(self, lower: ControlBase) -> ControlBase:
        """This control's fields, with `lower`'s where this one sets nothing."""
        return ControlBase(
            **{
                f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(lower, f.name)
                for f in fields(self)
            }
        )


NO_CONTROL = ControlBase()


@dataclass(frozen=True)
class Event:
    """One DERControl as read from a DERControlList."""

    mrid: str
    program: str  # DERProgram href
    primacy: int
    creation_s: int
    start_s: int
    duration_s: int
    status: int
    base: ControlBase
    randomize_start_s: int = 0
    randomize_duration_s: int = 0
    response_required: int = 0
    reply_to: str | None = None


@dataclass
class _Held:
    """A cached event with what the device has learned about it and when."""

    event: Event
    first_seen_s: float
    start_s: float  # effective start (randomised)
    end_s: float  # effective end (randomised), moved earlier by a cancellation or disappearance
    applies_from_s: float
    responded: set[int] = field(default_factory=set)


def _draw(device_id: str, mrid: str, salt: str, bound_s: int) -> float:
    """A stable uniform draw in [0, bound] (or [bound, 0]) for this device and event."""
    if not bound_s:
        return 0.0
    seed = int.from_bytes(hashlib.sha256(f"{device_id}:{mrid}:{salt}".encode()).digest()[:8], "big")
    return random.Random(seed).uniform(0.0, float(bound_s))


class EventBook:
    """A device's cached schedule across programs, and the control it applies at any instant."""

    def __init__(self, device_id: str, response_delay_s: float = 0.0) -> None:
        self.device_id = device_id
        self.response_delay_s = response_delay_s
        self._held: dict[str, _Held] = {}
        self._defaults: dict[str, tuple[int, ControlBase]] = {}  # program href -> (primacy, default)

    # -- learning -----------------------------------------------------------------------------------
    def set_default(self, program: str, primacy: int, base: ControlBase) -> None:
        self._defaults[program] = (primacy, base)

    def update_program(self, program: str, events: list[Event], seen_s: float) -> None:
        """Replace what the device knows of one program's events with a fresh DERControlList read."""
        acted_s = seen_s + self.response_delay_s
        fresh = {e.mrid: e for e in events}
        for mrid, gone in list(self._held.items()):
            if gone.event.program != program or mrid in fresh:
                continue
            # Gone from the list before its end: the server replaced or withdrew it.
            gone.end_s = min(gone.end_s, max(acted_s, gone.start_s))
        for e in events:
            held = self._held.get(e.mrid)
            is_new = held is None
            if held is None:
                start = e.start_s + _draw(self.device_id, e.mrid, "start", e.randomize_start_s)
                end = start + e.duration_s + _draw(self.device_id, e.mrid, "duration", e.randomize_duration_s)
                # Known ahead: runs from its start. Learned late: runs once the device has acted on it.
                applies_from = start if start >= seen_s else max(start, acted_s)
                held = _Held(e, seen_s, start, end, applies_from)
                self._held[e.mrid] = held
            if e.status in _STOPPED and (is_new or held.event.status != e.status):
                stop = held.start_s if is_new else acted_s
                if e.status == CANCELLED_RANDOMIZED and not is_new:
                    stop += abs(_draw(self.device_id, e.mrid, "cancel", e.randomize_start_s))
                held.end_s = min(held.end_s, max(stop, held.start_s))
            held.event = e

    def forget_before(self, t_s: float) -> None:
        """Drop events that ended before `t_s` (keeps the cache small over long runs)."""
        for mrid in [m for m, h in self._held.items() if h.end_s < t_s]:
            del self._held[mrid]

    # -- applying -----------------------------------------------------------------------------------
    def running(self, t_s: float) -> list[Event]:
        """Events that apply at `t_s`: one per program (the newest), highest precedence first."""
        per_program: dict[str, _Held] = {}
        for held in self._held.values():
            if not (held.applies_from_s <= t_s < held.end_s):
                continue
            best = per_program.get(held.event.program)
            if best is None or _newer(held.event, best.event):
                per_program[held.event.program] = held
        chosen = sorted(per_program.values(), key=lambda h: (h.event.primacy, -h.event.creation_s))
        return [h.event for h in chosen]

    def control_at(self, t_s: float, fallback: bool = False) -> ControlBase:
        """The merged control in force at `t_s`; in fallback only the DefaultDERControls count."""
        merged = NO_CONTROL
        if not fallback:
            for e in self.running(t_s):
                merged = merged.merged_over(e.base)
        for _, base in sorted(self._defaults.values(), key=lambda pair: pair[0]):
            merged = merged.merged_over(base)
        return merged

    def default_control(self) -> ControlBase:
        return self.control_at(0.0, fallback=True)

    # -- responses ----------------------------------------------------------------------------------
    def due_responses(self, t_s: float) -> list[tuple[Event, int]]:
        """(event, status) Responses owed at `t_s` under each event's responseRequired bits.

        Bit 0 asks for "received"; bit 1 for the specific ones (started, completed, cancelled,
        superseded). Each is owed once.
        """
        running = {e.mrid for e in self.running(t_s)}
        owed: list[tuple[Event, int]] = []
        for held in self._held.values():
            e, rr = held.event, held.event.response_required
            wanted: list[int] = []
            if rr & 1:
                wanted.append(RECEIVED)
            if rr & 2:
                if e.status == SUPERSEDED:
                    wanted.append(RSP_SUPERSEDED)
                elif e.status in _STOPPED:
                    wanted.append(RSP_CANCELLED)
                else:
                    if e.mrid in running or t_s >= held.end_s > held.applies_from_s:
                        wanted.append(STARTED)
                    if t_s >= held.end_s and held.end_s > held.applies_from_s:
                        wanted.append(COMPLETED)
            for status in wanted:
                if status not in held.responded:
                    owed.append((e, status))
        return owed

    def mark_responded(self, mrid: str, status: int) -> None:
        held = self._held.get(mrid)
        if held is not None:
            held.responded.add(status)

    def __len__(self) -> int:
        return len(self._held)


def _newer(a: Event, b: Event) -> bool:
    return (a.creation_s, a.mrid) > (b.creation_s, b.mrid)


def with_status(event: Event, status: int) -> Event:
    return replace(event, status=status)
