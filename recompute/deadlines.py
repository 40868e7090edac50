"""Derate deadlines kept in the store's terms, so they survive a crash, a restart and a takeover.

A network version, a derate or outage, or the clearing of one must be in published envelopes within
`derate_deadline_s` of when the operator entered it. (A clear counts: an outage's end puts the load
and generation behind it back on the feeder, which can leave everyone else's envelope too large.)
Each published set records which changes it covers (the newest network version and derate id its
inputs held, and how many derates had been cleared); a change beyond that is pending, and falls due
at its own `created_s` (`loaded_s`, `cleared_s`) plus the deadline, on the engine's clock.
Nothing here is a timer: the engine asks `due(now)` on every tick, so tests and the simulator's
accelerated clock see the same deadlines as a server on the wall clock, and a publisher that has just
taken over knows at once which changes its dead predecessor had not published, and how late they are.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridshare.recompute.inputs import of_network
from gridshare.store.models import AssetDerate, EnvelopePointer, EnvelopeSetRecord, NetworkModel

#: The deadline path starts this share of `derate_deadline_s` early, so that its fallback publication
#: (seconds on the largest feeders, more on a loaded machine) is out by the deadline, not begun at it.
LEAD_FRACTION = 0.25


@dataclass(frozen=True)
class Coverage:
    """The newest network version and derate a published set took into account, and how many derates
    had been cleared by then."""

    network_id: int
    derate_id: int
    cleared: int = 0

    @classmethod
    def of(cls, fingerprint: Sequence[object]) -> Coverage:
        """From `inputs_fingerprint`: (newest network id, newest derate id, derates cleared, ...)."""
        return cls(_int(fingerprint[0]), _int(fingerprint[1]), _int(fingerprint[2]))

    def as_json(self) -> dict[str, int]:
        return {"network_id": self.network_id, "derate_id": self.derate_id, "cleared": self.cleared}

    def union(self, other: Coverage | None) -> Coverage:
        if other is None:
            return self
        return Coverage(
            max(self.network_id, other.network_id),
            max(self.derate_id, other.derate_id),
            max(self.cleared, other.cleared),
        )


@dataclass(frozen=True)
class Change:
    """A network version or a derate that published envelopes may not yet reflect."""

    kind: str  # "network" | "derate" | "outage" | "clear"
    id: int  # network or derate id; for a clear, its place among all clears (1 = the first ever)
    created_s: int
    asset: str | None = None  # the derated asset

    def covered_by(self, coverage: Coverage | None) -> bool:
        if coverage is None:
            return False
        if self.kind == "network":
            return self.id <= coverage.network_id
        if self.kind == "clear":
            return self.id <= coverage.cleared
        return self.id <= coverage.derate_id

    @property
    def key(self) -> tuple[str, int]:
        return (
            "clear" if self.kind == "clear" else "network" if self.kind == "network" else "derate",
            self.id,
        )

    def describe(self) -> str:
        if self.kind == "network":
            return f"network version {self.id}"
        return f"{'end of the derate' if self.kind == 'clear' else self.kind} of {self.asset}"


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def published_coverage(session: Session, network: str) -> Coverage | None:
    """What the current set covers; None when nothing is published.

    Sets published before coverage was recorded count as covering their network and every derate
    entered before them.
    """
    record = session.execute(
        select(EnvelopeSetRecord)
        .join(EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id)
        .where(EnvelopePointer.network == network)
    ).scalar_one_or_none()
    if record is None:
        return None
    covers: Any = (record.detail or {}).get("covers")
    if isinstance(covers, dict):
        return Coverage(
            _int(covers.get("network_id")), _int(covers.get("derate_id")), _int(covers.get("cleared"))
        )
    derate, cleared = session.execute(
        select(
            func.max(AssetDerate.id).filter(AssetDerate.created_s <= record.created_s),
            func.count(AssetDerate.id).filter(AssetDerate.cleared_s <= record.created_s),
        ).where(of_network(network))
    ).one()
    return Coverage(_int(record.network_id), _int(derate), _int(cleared))


def newest_marks(session: Session, network: str) -> Coverage:
    """The network's newest version and derate in the store, and how many of its derates are cleared."""
    version = session.execute(
        select(func.max(NetworkModel.id)).where(NetworkModel.name == network)
    ).scalar_one()
    derate, cleared = session.execute(
        select(func.max(AssetDerate.id), func.count(AssetDerate.cleared_s)).where(of_network(network))
    ).one()
    return Coverage(_int(version), _int(derate), _int(cleared))


def uncovered_changes(session: Session, network: str, coverage: Coverage | None) -> list[Change]:
    """Network versions, derates (not cleared since) and clears beyond `coverage`.

    Clears are told apart by their order (cleared_s, then id): the ones past the `cleared` count
    the set covers are the newest ones.
    """
    network_from = coverage.network_id if coverage is not None else 0
    derate_from = coverage.derate_id if coverage is not None else 0
    cleared_from = coverage.cleared if coverage is not None else 0
    networks = session.execute(
        select(NetworkModel.id, NetworkModel.loaded_s).where(
            NetworkModel.name == network, NetworkModel.id > network_from
        )
    ).all()
    derates = session.execute(
        select(AssetDerate.id, AssetDerate.created_s, AssetDerate.asset, AssetDerate.factor).where(
            of_network(network), AssetDerate.id > derate_from, AssetDerate.cleared_s.is_(None)
        )
    ).all()
    clears = session.execute(
        select(AssetDerate.cleared_s, AssetDerate.asset)
        .where(of_network(network), AssetDerate.cleared_s.is_not(None))
        .order_by(AssetDerate.cleared_s, AssetDerate.id)
        .offset(cleared_from)
    ).all()
    return (
        [Change("network", int(i), int(t)) for i, t in networks]
        + [
            Change("outage" if not factor else "derate", int(i), int(t), asset)
            for i, t, asset, factor in derates
        ]
        + [Change("clear", cleared_from + n + 1, int(t or 0), asset) for n, (t, asset) in enumerate(clears)]
    )


class DeadlineBook:
    """Pending changes and when each falls due; thread-safe (the ticker and the runs both use it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], tuple[Change, float]] = {}

    def arm(self, changes: Iterable[Change], deadline_s: float) -> list[Change]:
        """Add changes not yet pending (due `LEAD_FRACTION` of the deadline early); returns the new ones."""
        added = []
        with self._lock:
            for change in changes:
                if change.key not in self._pending:
                    self._pending[change.key] = (change, change.created_s + deadline_s * (1 - LEAD_FRACTION))
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
