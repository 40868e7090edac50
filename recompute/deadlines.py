"""Derate deadlines kept in the store's terms, so they survive a crash, a restart and a takeover.

A network version or a derate must be in published envelopes within `derate_deadline_s` of when the
operator entered it. Each published set records which changes it covers (the newest network version
and derate id its inputs held); a change newer than that is pending, and falls due at its own
`created_s` (or `loaded_s`) plus the deadline, on the engine's clock. Nothing here is a timer: the
engine asks `due(now)` on every tick, so tests and the simulator's accelerated clock see the same
deadlines as a server on the wall clock, and a publisher that has just taken over knows at once which
changes its dead predecessor had not published, and how late they already are.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridshare.store.models import AssetDerate, EnvelopePointer, EnvelopeSetRecord, NetworkModel


@dataclass(frozen=True)
class Coverage:
    """The newest network version and derate a published set took into account."""

    network_id: int
    derate_id: int

    @classmethod
    def of(cls, fingerprint: Sequence[object]) -> Coverage:
        """From `inputs_fingerprint`: (newest network id, newest derate id, ...)."""
        return cls(_int(fingerprint[0]), _int(fingerprint[1]))

    def as_json(self) -> dict[str, int]:
        return {"network_id": self.network_id, "derate_id": self.derate_id}

    def union(self, other: Coverage | None) -> Coverage:
        if other is None:
            return self
        return Coverage(max(self.network_id, other.network_id), max(self.derate_id, other.derate_id))


@dataclass(frozen=True)
class Change:
    """A network version or a derate that published envelopes may not yet reflect."""

    kind: str  # "network" | "derate"
    id: int
    created_s: int
    asset: str | None = None  # the derated asset

    def covered_by(self, coverage: Coverage | None) -> bool:
        if coverage is None:
            return False
        return self.id <= (coverage.network_id if self.kind == "network" else coverage.derate_id)

    def describe(self) -> str:
        return f"network version {self.id}" if self.kind == "network" else f"derate of {self.asset}"


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def published_coverage(session: Session) -> Coverage | None:
    """What the current set covers; None when nothing is published.

    Sets published before coverage was recorded count as covering their network and every derate
    entered before them.
    """
    record = session.execute(
        select(EnvelopeSetRecord)
        .join(EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id)
        .where(EnvelopePointer.id == 1)
    ).scalar_one_or_none()
    if record is None:
        return None
    covers: Any = (record.detail or {}).get("covers")
    if isinstance(covers, dict):
        return Coverage(_int(covers.get("network_id")), _int(covers.get("derate_id")))
    derate = session.execute(
        select(func.max(AssetDerate.id)).where(AssetDerate.created_s <= record.created_s)
    ).scalar_one()
    return Coverage(_int(record.network_id), _int(derate))


def newest_marks(session: Session) -> Coverage:
    """The newest network version and derate in the store (two index lookups)."""
    network = session.execute(select(func.max(NetworkModel.id))).scalar_one()
    derate = session.execute(select(func.max(AssetDerate.id))).scalar_one()
    return Coverage(_int(network), _int(derate))


def uncovered_changes(session: Session, coverage: Coverage | None) -> list[Change]:
    """Network versions and derates (not cleared) newer than `coverage`."""
    network_from = coverage.network_id if coverage is not None else 0
    derate_from = coverage.derate_id if coverage is not None else 0
    networks = session.execute(
        select(NetworkModel.id, NetworkModel.loaded_s).where(NetworkModel.id > network_from)
    ).all()
    derates = session.execute(
        select(AssetDerate.id, AssetDerate.created_s, AssetDerate.asset).where(
            AssetDerate.id > derate_from, AssetDerate.cleared_s.is_(None)
        )
    ).all()
    return [Change("network", int(i), int(t)) for i, t in networks] + [
        Change("derate", int(i), int(t), asset) for i, t, asset in derates
    ]


class DeadlineBook:
    """Pending changes and when each falls due; thread-safe (the ticker and the runs both use it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], tuple[Change, float]] = {}

    def arm(self, changes: Iterable[Change], deadline_s: float) -> list[Change]:
        """Add changes not yet pending; returns the new ones."""
        added = []
        with self._lock:
            for change in changes:
                key = (change.kind, change.id)
                if key not in self._pending:
                    self._pending[key] = (change, change.created_s + deadline_s)
                    added.append(change)
        return added

    def forget_covered(self, coverage: Coverage | None) -> None:
        with self._lock:
            self._pending = {k: v for k, v in self._pending.items() if not v[0].covered_by(coverage)}

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def due(self, now_s: float) -> list[Change]:
        with self._lock:
            return [change for change, due_s in self._pending.values() if due_s <= now_s]

    def pending(self) -> list[tuple[Change, float]]:
        with self._lock:
            return sorted(self._pending.values(), key=lambda p: p[1])
