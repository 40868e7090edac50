"""Envelope blocks of the current set, read as DERControls of the envelope program.

A block becomes an `EnvelopeControl`: the same fields a stored DerControl has, so status derivation
and rendering treat both alike. Its mRID is derived from its content, so a device sees the same
mRID for the same event in every poll and every republication that keeps it. Blocks carry the
site's gross limits (opModGenLimW, opModLoadLimW) when the set stored them (store.envelope_blocks):
without them a device applying its default mode by mode would stay at the default's gross limits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.envelopes.blocks import Block, to_blocks
from gridshare.store.envelope_blocks import GrossLimits, decode_envelope
from gridshare.store.models import EnvelopePointer, EnvelopeSetRecord, Site, SiteEnvelope


@dataclass(frozen=True)
class EnvelopeControl:
    """A published envelope block in DerControl's shape (its `id` is its mRID)."""

    id: str
    mrid: str
    program_id: int
    site_id: int
    creation_s: int
    start_s: int
    duration_s: int
    export_limit_w: float
    import_limit_w: float
    description: str = "DOE"
    version: int = 0
    cancelled_s: int | None = None
    cancel_randomized: bool = False
    randomize_start_s: int | None = None
    randomize_duration_s: int | None = None
    response_required: int = 0
    generation_limit_w: float | None = None
    load_limit_w: float | None = None
    connect: bool | None = None
    energize: bool | None = None
    fixed_w_pct_hundredths: int | None = None
    max_w_pct_hundredths: int | None = None
    ramp_tms_hundredths_s: int | None = None


def envelope_mrid(
    site_id: int, program_id: int, block: Block, pen: int, gross: GrossLimits | None = None
) -> str:
    """From the content a device sees: other gross limits are another event (no mRID reused for it)."""
    extra = "" if gross is None else f":{gross.generation_w!r}:{gross.load_w!r}"
    digest = hashlib.sha256(
        f"{site_id}:{program_id}:{block.start_s}:{block.duration_s}:{block.export_limit_w!r}:"
        f"{block.import_limit_w!r}:{block.created_s}{extra}".encode()
    ).hexdigest()
    return f"{digest[:24].upper()}{pen:08d}"


def current_envelope(session: Session, site: Site) -> tuple[int, list[Block], GrossLimits | None] | None:
    """(program id, blocks, gross limits) of the current set for this site; None when nothing is published."""
    row = session.execute(
        select(EnvelopeSetRecord.program_id, SiteEnvelope.blocks)
        .join(EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id)
        .join(SiteEnvelope, SiteEnvelope.set_id == EnvelopeSetRecord.id)
        .where(SiteEnvelope.site_id == site.id)
        .order_by(EnvelopeSetRecord.created_s.desc())  # one network's set holds a site (publish moves it)
        .limit(1)
    ).first()
    if row is None or row[0] is None:
        return None
    blocks, gross = decode_envelope(row[1])
    return int(row[0]), to_blocks(blocks), gross


def envelope_network(session: Session, site_id: int) -> str | None:
    """The network whose current set holds this site's envelope (None: no network publishes for it).

    A body showing the envelope depends on that network's change key: a publication elsewhere leaves
    it cached (server/shared/request_unit.py `depends_on_envelope`).
    """
    return session.execute(
        select(EnvelopePointer.network)
        .join(SiteEnvelope, SiteEnvelope.set_id == EnvelopePointer.set_id)
        .where(SiteEnvelope.site_id == site_id)
        .limit(1)
    ).scalar_one_or_none()


def _control(site: Site, program_id: int, b: Block, gross: GrossLimits | None, mrid: str) -> EnvelopeControl:
    return EnvelopeControl(
        id=mrid,
        mrid=mrid,
        program_id=program_id,
        site_id=site.id,
        creation_s=b.created_s,
        start_s=b.start_s,
        duration_s=b.duration_s,
        export_limit_w=b.export_limit_w,
        import_limit_w=b.import_limit_w,
        generation_limit_w=None if gross is None else gross.generation_w,
        load_limit_w=None if gross is None else gross.load_w,
    )


def envelope_controls(
    session: Session, site: Site, program_id: int, now_s: float, pen: int
) -> list[EnvelopeControl]:
    """This site's envelope blocks that have not ended, if `program_id` is the envelope program."""
    found = current_envelope(session, site)
    if found is None or found[0] != program_id:
        return []
    _, blocks, gross = found
    return [
        _control(site, program_id, b, gross, envelope_mrid(site.id, program_id, b, pen, gross))
        for b in blocks
        if b.end_s > now_s
    ]


def envelope_control_by_mrid(session: Session, site: Site, mrid: str, pen: int) -> EnvelopeControl | None:
    """The current set's block for this site with this mRID, ended or not (a Response may come late)."""
    found = current_envelope(session, site)
    if found is None:
        return None
    program_id, blocks, gross = found
    for b in blocks:
        if envelope_mrid(site.id, program_id, b, pen, gross) == mrid:
            return _control(site, program_id, b, gross, mrid)
    return None
