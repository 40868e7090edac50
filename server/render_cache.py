"""Rendered bodies reused until client-visible state changes or a control changes status.

A site's DERControlList changes only when envelopes are republished or a control starts or ends,
so a poll can be answered from memory. Validity is checked against the publication counter that
every write bumps in the same transaction (so several workers on one database stay correct) and
against the next status transition time computed when the body was rendered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedBody:
    generation: int
    valid_until_s: float
    body: bytes


class RenderCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[tuple[object, ...], CachedBody] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: tuple[object, ...], generation: int, now_s: float) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.generation != generation or now_s >= entry.valid_until_s:
                return None
            self._entries.move_to_end(key)
            return entry.body

    def put(self, key: tuple[object, ...], generation: int, valid_until_s: float, body: bytes) -> None:
        with self._lock:
            self._entries[key] = CachedBody(generation, valid_until_s, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
