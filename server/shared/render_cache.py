"""Rendered responses reused until client-visible state changes or their validity horizon passes.

Devices poll far more often than anything changes, so a poll can be answered from memory. An entry
is valid while (1) the publication counter (change key `all`, which every publishing write bumps in
the same transaction, so several workers on one database stay correct) and (2) the versions of any
narrower change keys it depends on (`deps`, store/change_feed.py) are what they were when it was
rendered, and (3) the clock is inside the window its body is true for: a DERControl's EventStatus
holds until the next status transition, Time only for the second it names.

Envelope blocks start and end on common 5-minute boundaries, so every device's list reaches its
transition at the same instant. An entry may therefore carry a `refresh`: a way to re-render its
body for a later time from what it already holds, without the database, so the boundary costs each
device a cheap splice instead of a full render (no stampede on the store).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

#: Re-renders a body for time `now_s` from data captured at render time: (valid_until_s, body).
Refresh = Callable[[float], tuple[float, bytes]]
#: Current versions of change keys (store/change_feed.py): an entry with `deps` is valid only while
#: they are still the versions recorded when it was rendered (taken before its data was read).
VersionsOf = Callable[[tuple[str, ...]], tuple[int, ...]]
#: Response headers as the application sent them, `content-length` included (kept exact on refresh).
Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class CachedBody:
    generation: int
    valid_until_s: float
    body: bytes
    refresh: Refresh | None = None
    deps: tuple[str, ...] = ()
    dep_versions: tuple[int, ...] = ()
    #: The start of the window the body is true for (a clock set back must not serve a later body).
    valid_from_s: float = -math.inf
    headers: Headers = ()
    #: A GET's body is a 200; a write that changed nothing keeps the status it was answered with.
    status: int = 200


def _with_length(headers: Headers, body: bytes) -> Headers:
    length = str(len(body)).encode()
    return tuple((k, length if k == b"content-length" else v) for k, v in headers)


class RenderCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[tuple[object, ...], CachedBody] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, key: tuple[object, ...], generation: int, now_s: float, versions: VersionsOf | None = None
    ) -> bytes | None:
        entry = self.lookup(key, generation, now_s, versions)
        return None if entry is None else entry.body

    def lookup(
        self, key: tuple[object, ...], generation: int, now_s: float, versions: VersionsOf | None = None
    ) -> CachedBody | None:
        """The entry for `key` if it is still current at `generation`, the keys' versions and `now_s`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.generation != generation:
                return None
            self._entries.move_to_end(key)
        if entry.deps and (versions is None or versions(entry.deps) != entry.dep_versions):
            return None
        if now_s < entry.valid_from_s:
            return None
        if now_s < entry.valid_until_s:
            return entry
        if entry.refresh is None:
            return None
        valid_until_s, body = entry.refresh(now_s)  # outside the lock: other polls go on meanwhile
        fresh = replace(
            entry, valid_until_s=valid_until_s, body=body, headers=_with_length(entry.headers, body)
        )
        with self._lock:
            if self._entries.get(key) is entry:  # not replaced by a newer render in the meantime
                self._entries[key] = fresh
        return fresh

    def put(
        self,
        key: tuple[object, ...],
        generation: int,
        valid_until_s: float,
        body: bytes,
        refresh: Refresh | None = None,
        deps: tuple[str, ...] = (),
        dep_versions: tuple[int, ...] = (),
        *,
        valid_from_s: float = -math.inf,
        headers: Headers = (),
        status: int = 200,
    ) -> None:
        entry = CachedBody(
            generation, valid_until_s, body, refresh, deps, dep_versions, valid_from_s, headers, status
        )
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
