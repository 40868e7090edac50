"""Rendered bodies reused until client-visible state changes or a control changes status.

A site's DERControlList changes only when envelopes are republished or a control starts or ends,
so a poll can be answered from memory. Validity is checked against the publication counter that
every publishing write bumps in the same transaction (so several workers on one database stay
correct) and against the next status transition time computed when the body was rendered.

Envelope blocks start and end on common 5-minute boundaries, so every device's list reaches its
transition at the same instant. An entry may therefore carry a `refresh`: a way to re-render its
body for a later time from what it already holds, without the database, so the boundary costs each
device a cheap splice instead of a full render (no stampede on the store).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: Re-renders a body for time `now_s` from data captured at render time: (valid_until_s, body).
Refresh = Callable[[float], tuple[float, bytes]]
#: Current versions of change keys (store/change_feed.py): an entry with `deps` is valid only while
#: they are still the versions recorded when it was rendered (taken before its data was read).
VersionsOf = Callable[[tuple[str, ...]], tuple[int, ...]]


@dataclass(frozen=True)
class CachedBody:
    generation: int
    valid_until_s: float
    body: bytes
    refresh: Refresh | None = None
    deps: tuple[str, ...] = ()
    dep_versions: tuple[int, ...] = ()


class RenderCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[tuple[object, ...], CachedBody] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(
        self, key: tuple[object, ...], generation: int, now_s: float, versions: VersionsOf | None = None
    ) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.generation != generation:
                return None
            self._entries.move_to_end(key)
        if entry.deps and (versions is None or versions(entry.deps) != entry.dep_versions):
            return None
        if now_s < entry.valid_until_s:
            return entry.body
        if entry.refresh is None:
            return None
        valid_until_s, body = entry.refresh(now_s)  # outside the lock: other polls go on meanwhile
        with self._lock:
            if self._entries.get(key) is entry:  # not replaced by a newer render in the meantime
                self._entries[key] = CachedBody(
                    generation, valid_until_s, body, entry.refresh, entry.deps, entry.dep_versions
                )
        return body

    def put(
        self,
        key: tuple[object, ...],
        generation: int,
        valid_until_s: float,
        body: bytes,
        refresh: Refresh | None = None,
        deps: tuple[str, ...] = (),
        dep_versions: tuple[int, ...] = (),
    ) -> None:
        with self._lock:
            self._entries[key] = CachedBody(generation, valid_until_s, body, refresh, deps, dep_versions)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
