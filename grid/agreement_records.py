"""The operator's connection agreements (written through the operator API) applied to the network model.

A site's agreement reaches the engine from two places: the network file (`agreement:` under each
site, the planning baseline loaded with the network) and the `connection_agreement` table, which the
operator API writes for one registered site (EndDevice) at a time. Precedence: **the operator's
record wins** for the network site bound to that EndDevice by NMI. It is the more specific and the
later statement (an agreement amended after the network was loaded), and the operator can see and
change it without reloading the network. Its `max_export_w` / `max_import_w`, when set, replace the
site maxima of the network file, and its `queue_position`, when set, the file's. Sites with no
record keep the file's agreement. The kinds are the connection methods of the Ameren flexible
interconnection report (firm, limited, scheduled, staggered, dynamic), as in the network file.

Pure: records in, network model out (the store is read in recompute/snapshot.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from gridshare.grid.agreements import HOURS, MONTHS, Agreement, Dynamic, Firm, Limited, Scheduled, Staggered
from gridshare.grid.netfile import NetworkFile


class AgreementRecord(Protocol):
    """What the engine reads of an operator's agreement (store.models.ConnectionAgreement has these)."""

    @property
    def kind(self) -> str: ...
    @property
    def max_export_w(self) -> float | None: ...
    @property
    def max_import_w(self) -> float | None: ...
    @property
    def export_limit_w(self) -> float | None: ...
    @property
    def import_limit_w(self) -> float | None: ...
    @property
    def export_floor_w(self) -> float | None: ...
    @property
    def import_floor_w(self) -> float | None: ...
    @property
    def staggered_until_s(self) -> int | None: ...
    @property
    def staggered_export_w(self) -> float | None: ...
    @property
    def staggered_import_w(self) -> float | None: ...
    @property
    def schedule(self) -> Sequence[Mapping[str, Any]] | None: ...
    @property
    def queue_position(self) -> int | None: ...


def _or(value_w: float | None, file_w: float) -> float:
    """The record's maximum if it has one, else the network file's (both in W)."""
    return file_w if value_w is None else value_w


def _schedule_w(points: Sequence[Mapping[str, Any]], key: str) -> np.ndarray | None:
    """A 12 x 24 grid in W; hours without a value are unlimited (the site maximum applies)."""
    grid = np.full((MONTHS, HOURS), np.inf)
    given = False
    for p in points:
        value = p.get(key)
        if value is not None:
            grid[int(p["month"]) - 1, int(p["hour"])] = float(value)
            given = True
    return grid if given else None


def record_agreement(record: AgreementRecord) -> Agreement:
    """The network model's agreement for an operator's record (both in W: no conversion here)."""
    kind = str(record.kind)
    if kind == "limited":
        return Limited(export_w=record.export_limit_w, import_w=record.import_limit_w)
    if kind == "dynamic":
        return Dynamic(
            export_floor_w=record.export_floor_w or 0.0,
            import_floor_w=record.import_floor_w or 0.0,
        )
    if kind == "scheduled":
        points = record.schedule or ()
        return Scheduled(export_w=_schedule_w(points, "export_w"), import_w=_schedule_w(points, "import_w"))
    if kind == "staggered":
        # The staggered limits hold until `staggered_until_s`; the agreement's own limits after it.
        return Staggered(
            switch_at=datetime.fromtimestamp(record.staggered_until_s or 0, UTC),
            before_export_w=record.staggered_export_w,
            before_import_w=record.staggered_import_w,
            after_export_w=record.export_limit_w,
            after_import_w=record.import_limit_w,
        )
    return Firm()


def apply_agreement_records(nf: NetworkFile, by_nmi: Mapping[str, AgreementRecord]) -> NetworkFile:
    """`nf` with each site that has an operator's record (by NMI) under that record's agreement."""
    if not by_nmi:
        return nf
    sites = []
    for s in nf.sites:
        record = by_nmi.get(s.nmi) if s.nmi else None
        if record is None:
            sites.append(s)
            continue
        sites.append(
            replace(
                s,
                agreement=record_agreement(record),
                max_export_w=_or(record.max_export_w, s.max_export_w),
                max_import_w=_or(record.max_import_w, s.max_import_w),
                queue_position=s.queue_position if record.queue_position is None else record.queue_position,
            )
        )
    return replace(nf, sites=tuple(sites))


def record_key(record: AgreementRecord) -> tuple[object, ...]:
    """Everything of a record the engine uses, comparable: a change in it means new envelopes."""
    schedule = tuple(sorted(tuple(sorted(p.items())) for p in record.schedule or ()))
    return (
        str(record.kind),
        record.max_export_w,
        record.max_import_w,
        record.export_limit_w,
        record.import_limit_w,
        record.export_floor_w,
        record.import_floor_w,
        record.staggered_until_s,
        record.staggered_export_w,
        record.staggered_import_w,
        schedule,
        record.queue_position,
    )
