"""Pure wire-format rules: ActivePower multipliers, event status, the Time resource."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from gridshare.server.shared.control_status import (
    ACTIVE,
    CANCELLED,
    SCHEDULED,
    SUPERSEDED,
    derive_states,
    next_change_s,
)
from gridshare.server.shared.timeinfo import time_fields
from gridshare.server.wire.power import decode_active_power_w, encode_active_power_w


@given(st.floats(min_value=0, max_value=32767 * 10**9, allow_nan=False))
def test_active_power_fits_int16_and_never_rounds_up(watts: float) -> None:
    multiplier, value = encode_active_power_w(watts)
    assert -32768 <= value <= 32767
    assert 0 <= multiplier <= 9
    published = decode_active_power_w(multiplier, value)
    assert published <= watts + 1e-6 * max(1.0, watts)
    assert watts - published < 10**multiplier


def test_active_power_keeps_watt_precision_when_it_fits() -> None:
    assert encode_active_power_w(32767) == (0, 32767)
    assert encode_active_power_w(32768) == (1, 3276)
    assert encode_active_power_w(5_000_000) == (3, 5000)


@dataclass
class C:
    id: int
    mrid: str
    creation_s: int
    start_s: int
    duration_s: int
    program_id: int = 1
    site_id: int = 1
    cancelled_s: int | None = None
    cancel_randomized: bool = False


def test_statuses_and_order() -> None:
    a = C(1, "A" * 32, creation_s=0, start_s=100, duration_s=100)
    b = C(2, "B" * 32, creation_s=10, start_s=150, duration_s=100)  # newer, overlaps a -> a superseded
    c = C(3, "C" * 32, creation_s=0, start_s=500, duration_s=100, cancelled_s=20)
    d = C(4, "D" * 32, creation_s=0, start_s=100, duration_s=100, program_id=2)  # other program: untouched
    e = C(5, "E" * 32, creation_s=0, start_s=0, duration_s=50)  # ended
    states = derive_states([a, b, c, d, e], now_s=120)
    got = {s.control.id: s.status for s in states}
    assert got == {1: SUPERSEDED, 2: SCHEDULED, 3: CANCELLED, 4: ACTIVE}
    assert [s.control.start_s for s in states] == sorted(s.control.start_s for s in states)
    assert next_change_s([a, b, c, d, e], 120) == 150


def test_time_resource_in_a_dst_zone() -> None:
    # Sydney: AEST +10:00; AEDT +11:00 from the first Sunday in October (4 Oct 2026 02:00 = 3 Oct 16:00Z)
    summer = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp())
    f = time_fields(summer, "Australia/Sydney")
    assert f.tz_offset_s == 36000
    assert f.dst_offset_s == 3600
    assert f.dst_start_s == int(datetime(2026, 10, 3, 16, tzinfo=UTC).timestamp())
    assert f.dst_end_s == int(datetime(2026, 4, 4, 16, tzinfo=UTC).timestamp())
    assert f.local_time_s == summer + 39600
    utc = time_fields(summer, "UTC")
    assert (utc.tz_offset_s, utc.dst_offset_s, utc.local_time_s) == (0, 0, summer)
