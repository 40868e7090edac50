"""ActivePower encoding: watts = value x 10^multiplier with `value` an Int16 (IEEE 2030.5 ActivePower)."""

from __future__ import annotations

import math

INT16_MAX = 32767
INT16_MIN = -32768
#: PowerOfTenMultiplierType is an Int8 restricted to -9..9 by 2030.5.
MAX_MULTIPLIER = 9


def encode_active_power_w(watts: float) -> tuple[int, int]:
    """Return (multiplier, value) with the smallest non-negative multiplier that fits Int16.

    The value is truncated toward zero so a published limit is never above the computed one:
    a limit rounded up could let a site exceed what the network can carry.
    """
    if not math.isfinite(watts):
        raise ValueError(f"power must be finite, got {watts!r}")
    for multiplier in range(MAX_MULTIPLIER + 1):
        value = math.trunc(watts / 10**multiplier)
        if INT16_MIN <= value <= INT16_MAX:
            return multiplier, int(value)
    raise ValueError(f"{watts} W does not fit an ActivePower (max {INT16_MAX}e{MAX_MULTIPLIER})")


def decode_active_power_w(multiplier: int, value: int) -> float:
    if not INT16_MIN <= value <= INT16_MAX:
        raise ValueError(f"ActivePower value {value} is outside Int16")
    if not -MAX_MULTIPLIER <= multiplier <= MAX_MULTIPLIER:
        raise ValueError(f"multiplier {multiplier} is outside -9..9")
    return float(value) * 10.0**multiplier
