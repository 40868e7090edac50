"""Access checks a device's reports repeat, remembered until what they looked at changes.

A device posts a MirrorMeterReading every minute and a Response to each control it is sent, and each
one is checked against the store first: is this mirror (this EndDevice, this control) the caller's,
which MirrorMeterReadings does it hold? The answer only changes when registration, access or the
mirror itself change, so it is kept here tagged, like a cached body (server/shared/render_cache.py),
with the publication generation and the versions of the change keys it depends on, read before the
store was. The fast path (server/shared/fast_reports.py) accepts a report only against a check that is
still current; anything else goes to the application, which checks against the store and remembers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from gridshare.server.shared.render_cache import VersionsOf


@dataclass(frozen=True)
class _Check:
    generation: int
    deps: tuple[str, ...]
    dep_versions: tuple[int, ...]
    value: object


class CheckCache:
    """Values keyed by what was checked and for whom, valid at one generation and dependency versions."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._entries: OrderedDict[tuple[object, ...], _Check] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[object, ...], generation: int, versions: VersionsOf) -> object | None:
        """The value remembered for `key` if nothing it depends on has changed since; else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.generation != generation:
                return None
            self._entries.move_to_end(key)
        if entry.deps and versions(entry.deps) != entry.dep_versions:
            return None
        return entry.value

    def put(
        self,
        key: tuple[object, ...],
        generation: int,
        deps: tuple[str, ...],
        dep_versions: tuple[int, ...],
        value: object,
    ) -> None:
        with self._lock:
            self._entries[key] = _Check(generation, deps, dep_versions, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
