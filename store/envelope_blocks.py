"""Envelope blocks <-> bytes: one compact blob per site per set (40 bytes a block, float64 limits).

A blob may start with a 24-byte header carrying the site's gross limits (opModGenLimW, opModLoadLimW)
that every block of the set carries. They are per site, not per block: the engine sets them to the
site's unconstrained level so that a device applying its DefaultDERControl mode by mode is not held
at the default's gross limits while an envelope is active (docs/fallback.md). Blobs written before the
header existed are a whole number of blocks (40 n bytes) and still decode, without gross limits; a
header makes the length 24 + 40 n, so the two can never be confused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from gridshare.envelopes.blocks import BLOCK_DTYPE

#: Written first in a header; a negative int64 cannot be the start time that opens a header-less blob.
GROSS_MARKER = -0x47524F5353  # "GROSS"
#: marker, generation W, load W (struct rather than numpy: 10,000 sites a publication, ~1 us each).
HEADER = struct.Struct("<qdd")


@dataclass(frozen=True)
class GrossLimits:
    """A site's gross limits (W) carried by every envelope block of one set."""

    generation_w: float
    load_w: float


def encode_blocks(blocks: np.ndarray, gross: GrossLimits | None = None) -> bytes:
    body = np.ascontiguousarray(blocks, dtype=BLOCK_DTYPE).tobytes()
    if gross is None:
        return body
    return HEADER.pack(GROSS_MARKER, gross.generation_w, gross.load_w) + body


def decode_envelope(blob: bytes) -> tuple[np.ndarray, GrossLimits | None]:
    """(blocks, gross limits or None for a blob without them)."""
    if len(blob) % BLOCK_DTYPE.itemsize == HEADER.size:
        marker, generation_w, load_w = HEADER.unpack_from(blob)
        if marker != GROSS_MARKER:
            raise ValueError("envelope blob has a header of unknown kind")
        return np.frombuffer(blob, dtype=BLOCK_DTYPE, offset=HEADER.size), GrossLimits(generation_w, load_w)
    return np.frombuffer(blob, dtype=BLOCK_DTYPE), None


def decode_blocks(blob: bytes) -> np.ndarray:
    return decode_envelope(blob)[0]
