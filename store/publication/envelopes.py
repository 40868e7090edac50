"""Publish an envelope set: one blob of blocks per site, switched in by a single pointer update.

Each network has its own pointer (store.models.EnvelopePointer), so networks publish independently.
Everything happens in the caller's transaction: the new set's rows, the pointer switch, the change-key
bumps, and pruning the network's sets older than the one it replaces. A device therefore sees the old
set or the new set, never a mix; the replaced set stays one round for readers mid-request.

A site belongs to one network's set at a time: a site the new set holds is removed from any other
network's current set in the same transaction (a switching change), so its next publication comes
from its new network, never from both. Only the network's own change key is bumped (and the keys of
sites entering or leaving it): devices of other networks keep their cached DERControlLists.

Every block must end, and no later than `latest_end_s`: a server that stops publishing then leaves
devices on their DefaultDERControl within one horizon. A block that fails the check aborts the
transaction, so nothing of the set is published.

Each site's blob also carries the gross limits (opModGenLimW, opModLoadLimW) every one of its blocks
states (store.envelope_blocks): a site whose gross limits change gets all-new blocks, since the same
mRID must not come to mean other limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.orm import Session

from gridshare.envelopes.blocks import BLOCK_DTYPE, carry_forward, in_force
from gridshare.envelopes.compute import EnvelopeSet
from gridshare.envelopes.constraint_series import ConstraintSeries
from gridshare.envelopes.headroom import Direction
from gridshare.store.change_feed import ENVELOPES, bump_changes, envelope_site_key, network_key
from gridshare.store.console_models import ConstraintReportRecord, LimitHistory
from gridshare.store.constraint_blobs import encode_series
from gridshare.store.envelope_blocks import GrossLimits, decode_envelope, encode_blocks
from gridshare.store.models import EnvelopePointer, EnvelopeSetRecord, NetworkModel, Site, SiteEnvelope

#: Constraint reports kept: the current set's and the one before (a fallback set has none of its own).
REPORTS_KEPT = 2

EMPTY = np.zeros(0, dtype=BLOCK_DTYPE)
#: Behind an outage a site may neither generate nor consume through its connection (anti-islanding).
CUT_OFF_GROSS = GrossLimits(0.0, 0.0)


class UnboundedControl(ValueError):
    """A block without a finite end (or ending after the horizon allows) was about to be published."""


@dataclass(frozen=True)
class PublishSummary:
    sites: int
    blocks: int
    blocks_new: int  # blocks devices have not seen before (a republication of the same limits has none)


def check_finite(blocks: np.ndarray, latest_end_s: int | None, site_id: int) -> None:
    """Raise UnboundedControl unless every block has a positive duration and ends by `latest_end_s`."""
    if len(blocks) == 0:
        return
    ends = blocks["start"] + blocks["duration"]
    if np.any(blocks["duration"] <= 0) or (latest_end_s is not None and int(ends.max()) > latest_end_s):
        raise UnboundedControl(
            f"site {site_id}: a block would end at {int(ends.max())} (latest allowed {latest_end_s}) "
            f"or has no positive duration; nothing published"
        )


def current_set_id(session: Session, network: str) -> int | None:
    """The set the devices of `network` see now (None: nothing published for it)."""
    return session.execute(
        select(EnvelopePointer.set_id).where(EnvelopePointer.network == network)
    ).scalar_one_or_none()


def current_sets(session: Session) -> dict[str, int]:
    """Every network's current set id, by network name."""
    rows = session.execute(
        select(EnvelopePointer.network, EnvelopePointer.set_id).where(EnvelopePointer.set_id.is_not(None))
    )
    return {str(name): int(set_id) for name, set_id in rows if name is not None and set_id is not None}


def next_created_s(session: Session, now_s: int) -> int:
    """A new set's creation time: strictly newer than the set it replaces, so its blocks win every tie
    (and newer than any other network's current set, so a site moving in sees a newer event)."""
    newest = session.execute(
        select(func.max(EnvelopeSetRecord.created_s)).join(
            EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id
        )
    ).scalar_one_or_none()
    return max(now_s, int(newest) + 1) if newest is not None else now_s


def current_end_s(session: Session, network: str) -> int | None:
    """End of the network's current set's horizon (None when nothing is published)."""
    row = session.execute(
        select(EnvelopeSetRecord.start_s, EnvelopeSetRecord.n_intervals, EnvelopeSetRecord.interval_s)
        .join(EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id)
        .where(EnvelopePointer.network == network)
    ).first()
    return None if row is None else int(row[0] + row[1] * row[2])


def _switch_pointer(session: Session, network: str, set_id: int) -> None:
    """Point `network` at `set_id`; its first publication creates its pointer (one publisher: no race)."""
    moved = session.execute(
        update(EnvelopePointer).where(EnvelopePointer.network == network).values(set_id=set_id)
    ).rowcount  # type: ignore[attr-defined]
    if not moved:
        session.add(EnvelopePointer(network=network, set_id=set_id))
        session.flush()


def _take_sites(session: Session, network: str, site_ids: set[int]) -> set[int]:
    """Remove these sites from other networks' current sets (they moved here); returns the ones that
    were there. A device never sees a site's envelope from two networks."""
    if not site_ids:
        return set()
    others = {name: set_id for name, set_id in current_sets(session).items() if name != network}
    if not others:
        return set()
    elsewhere = (SiteEnvelope.set_id.in_(others.values()), SiteEnvelope.site_id.in_(site_ids))
    held = {int(i) for i in session.execute(select(SiteEnvelope.site_id).where(*elsewhere)).scalars()}
    if held:
        session.execute(delete(SiteEnvelope).where(*elsewhere))
    return held


def _sets_of(network: str) -> Select[int]:
    """The ids of every set computed on any version of `network`."""
    return (
        select(EnvelopeSetRecord.id)
        .join(NetworkModel, NetworkModel.id == EnvelopeSetRecord.network_id)
        .where(NetworkModel.name == network)
    )


def record_failed_run(
    session: Session,
    *,
    network_id: int | None,
    created_s: int,
    interval_s: int,
    policy: str,
    reason: str,
    detail: str,
) -> None:
    """A recomputation that published nothing, kept with the published sets so operators see it."""
    session.add(
        EnvelopeSetRecord(
            network_id=network_id,
            created_s=created_s,
            start_s=0,
            interval_s=interval_s,
            n_intervals=0,
            policy=policy,
            reason=reason[:64],
            status="failed",
            detail={"error": detail[:2000]},
        )
    )


def publish(
    session: Session,
    envelopes: EnvelopeSet,
    sites: dict[str, Site],
    record: EnvelopeSetRecord,
    now_s: int,
    resolution_w: dict[str, float],
    cut_off: Iterable[Site] = (),
    *,
    latest_end_s: int | None = None,
    carry_others: bool = False,
    gross: Mapping[str, GrossLimits] | None = None,
    series: Mapping[Direction, ConstraintSeries] | None = None,
    history_days: int | None = None,
    network: str,
) -> PublishSummary:
    """Write `envelopes` for every network site id in `sites` as set `record` and make it the current
    set of `network`.

    `resolution_w` is the rounding step per network site id (limits round down to it, so equal
    neighbours merge). Sites in `cut_off` sit behind an outage: zero export and import for the horizon.
    With `carry_others`, every other site keeps its blocks of the current set unchanged (a partial
    publication, e.g. fallback limits for the sites behind a derated asset). `gross` gives the gross
    limits (generation, load) each network site id's blocks carry; cut-off sites then carry zero.
    Without it, blocks carry none. `series` is what the engine computed per constraint (kept with the
    set for operators). The limits the replaced set had in force since it was published go to
    `limit_history` (kept `history_days`), so compliance and curtailment can be judged later.
    """
    previous_id = current_set_id(session, network)
    previous: dict[int, tuple[np.ndarray, GrossLimits | None]] = {}
    blobs: dict[int, bytes] = {}
    if previous_id is not None:
        for site_id, blob in session.execute(
            select(SiteEnvelope.site_id, SiteEnvelope.blocks).where(SiteEnvelope.set_id == previous_id)
        ):
            previous[site_id] = decode_envelope(blob)
            blobs[site_id] = blob
    starts = np.array([int(t.timestamp()) for t in envelopes.interval_starts], dtype=np.int64)
    column = {site_id: i for i, site_id in enumerate(envelopes.site_ids)}
    zeros = np.zeros(len(starts))
    limits = [
        (
            site,
            envelopes.export_limit_w[:, column[nid]],
            envelopes.import_limit_w[:, column[nid]],
            resolution_w[nid],
            None if gross is None else gross[nid],
        )
        for nid, site in sites.items()
    ] + [(site, zeros, zeros, 1.0, None if gross is None else CUT_OFF_GROSS) for site in cut_off]
    rows: list[dict[str, object]] = []
    n_blocks = n_new = 0
    for site, export_w, import_w, step_w, site_gross in limits:
        before, before_gross = previous.get(site.id, (EMPTY, None))
        if before_gross != site_gross:
            before = EMPTY  # other gross limits: every block is a new event
        blocks, fresh = carry_forward(
            before,
            starts,
            envelopes.interval_s,
            export_w,
            import_w,
            now_s=now_s,
            created_s=record.created_s,
            resolution_w=step_w,
        )
        check_finite(blocks, latest_end_s, site.id)
        n_blocks += len(blocks)
        n_new += fresh
        rows.append({"set_id": record.id, "site_id": site.id, "blocks": encode_blocks(blocks, site_gross)})
    n_written = len(rows)
    if carry_others:
        written = {int(r["site_id"]) for r in rows}  # type: ignore[call-overload]
        rows += [
            {"set_id": record.id, "site_id": site_id, "blocks": blob}
            for site_id, blob in blobs.items()
            if site_id not in written
        ]
    new_ids = {int(r["site_id"]) for r in rows}  # type: ignore[call-overload]
    moved_in = _take_sites(session, network, new_ids - set(previous))
    if rows:
        session.execute(insert(SiteEnvelope), rows)
    if previous_id is not None:
        record_history(session, previous_id, previous, now_s, history_days)
    if series is not None:
        record_series(session, record.id, network, series)
    _switch_pointer(session, network, record.id)
    keep = [record.id] + ([previous_id] if previous_id is not None else [])
    stale = _sets_of(network).where(
        EnvelopeSetRecord.status == "published",
        EnvelopeSetRecord.id.not_in(keep),
        EnvelopeSetRecord.id.not_in(
            select(EnvelopePointer.set_id).where(EnvelopePointer.set_id.is_not(None))
        ),
    )
    session.execute(delete(SiteEnvelope).where(SiteEnvelope.set_id.in_(stale)))
    # Sites entering or leaving this network's set (moved ones included) change which network a
    # device's body depends on: their own keys say so (request_unit.depends_on_envelope).
    changed_sites = (new_ids ^ set(previous)) | moved_in
    bump_changes(
        session, [network_key(network), ENVELOPES, *(envelope_site_key(i) for i in sorted(changed_sites))]
    )
    return PublishSummary(n_written, n_blocks, n_new)


def record_history(
    session: Session,
    set_id: int,
    blocks_by_site: Mapping[int, tuple[np.ndarray, GrossLimits | None]],
    now_s: int,
    keep_days: int | None,
) -> None:
    """Write what set `set_id` had in force from its publication until `now_s` (it is being replaced)."""
    record = session.get(EnvelopeSetRecord, set_id)
    if record is None:
        return
    detail = record.detail or {}
    fallback_sites = detail.get("fallback_site_ids")
    rows = []
    for site_id, (blocks, _) in blocks_by_site.items():
        fallback = bool(detail.get("fallback")) and (fallback_sites is None or site_id in fallback_sites)
        for b in in_force(blocks, record.created_s, now_s):
            rows.append(
                {
                    "site_id": site_id,
                    "start_s": int(b["start"]),
                    "end_s": int(b["start"] + b["duration"]),
                    "export_limit_w": float(b["export_w"]),
                    "import_limit_w": float(b["import_w"]),
                    "set_id": set_id,
                    "published_s": int(b["created"]),
                    "fallback": fallback,
                }
            )
    if rows:
        session.execute(insert(LimitHistory), rows)
    if keep_days is not None:
        session.execute(delete(LimitHistory).where(LimitHistory.start_s < now_s - keep_days * 86400))


def record_series(
    session: Session, set_id: int, network: str, series: Mapping[Direction, ConstraintSeries]
) -> None:
    """Keep the engine's constraint report with its set; drop all but the network's newest few."""
    session.add(ConstraintReportRecord(set_id=set_id, report=encode_series(dict(series))))
    session.flush()
    mine = _sets_of(network)
    kept = (
        select(ConstraintReportRecord.set_id)
        .where(ConstraintReportRecord.set_id.in_(mine))
        .order_by(ConstraintReportRecord.set_id.desc())
        .limit(REPORTS_KEPT)
    )
    keep = [int(x) for x in session.execute(kept).scalars()]
    session.execute(
        delete(ConstraintReportRecord).where(
            ConstraintReportRecord.set_id.in_(mine), ConstraintReportRecord.set_id.not_in(keep)
        )
    )
