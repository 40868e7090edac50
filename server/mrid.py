"""mRIDs: 32 upper-case hex digits whose last 8 are the PEN in decimal (as conformance suites read them)."""

from __future__ import annotations

import secrets


def new_mrid(pen: int) -> str:
    if not 0 <= pen <= 99_999_999:
        raise ValueError("PEN must fit in 8 decimal digits")
    return f"{secrets.token_hex(12).upper()}{pen:08d}"
