"""Envelope blocks <-> bytes: one compact blob per site per set (40 bytes a block, float64 limits)."""

from __future__ import annotations

import numpy as np

from envelopes.blocks import BLOCK_DTYPE


def encode_blocks(blocks: np.ndarray) -> bytes:
    return np.ascontiguousarray(blocks, dtype=BLOCK_DTYPE).tobytes()


def decode_blocks(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=BLOCK_DTYPE)
