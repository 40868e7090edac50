"""mRIDs: 32 upper-case hex digits whose last 8 are the PEN in decimal (as conformance suites read them)."""

from __future__ import annotations

import hashlib
import secrets


def new_mrid(pen: int) -> str:
    if not 0 <= pen <= 99_999_999:
        raise ValueError("PEN must fit in 8 decimal digits")
    return f"{secrets.token_hex(12).upper()}{pen:08d}"


def derived_mrid(pen: int, *parts: object) -> str:
    """A stable mRID for a resource the server derives rather than stores (e.g. a day's ReadingSet).

    The same parts always give the same mRID, so a client that caches it sees the same object again.
    """
    if not 0 <= pen <= 99_999_999:
        raise ValueError("PEN must fit in 8 decimal digits")
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24].upper()
    return f"{digest}{pen:08d}"
