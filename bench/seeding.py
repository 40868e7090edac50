"""Filling a benchmark's store directly: registered sites and their DERControls, as a fleet would leave them.

Benchmarks measure serving, not registration, so they write what registration and the operator API
would have written through the same store queries, with a scope like the one the TLS identity gives.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from gridshare.core.mrid import new_mrid
from gridshare.store.models import DerProgram, MirrorMeterReading, MirrorUsagePoint, Site
from gridshare.store.queries.controls import ControlValues, create_control
from gridshare.store.queries.sites import create_site
from gridshare.store.scope import ClientScope

#: Every benchmark site uses the dev PKI's registration PIN (2030.5 check digit of 11111).
PIN = 111115


def add_site(session: Session, scope: ClientScope, lfdi: str, sfdi: int, now_s: int) -> Site:
    """A registered EndDevice, as `POST /edev` by `scope` would make it."""
    return create_site(
        session,
        scope,
        lfdi=lfdi,
        sfdi=sfdi,
        device_category=0,
        post_rate_s=None,
        pin=PIN,
        now_s=now_s,
    )


@dataclass(frozen=True)
class MeteredSite:
    """The keys a device's reports point at: its site, its MirrorUsagePoint and MirrorMeterReading."""

    site_id: int
    mup_id: int
    mmr_id: int


def add_metered_site(
    session: Session,
    *,
    lfdi: str,
    now_s: int,
    mup_mrid: str,
    mmr_mrid: str,
    role_flags: int = 0,
    reading_type: Mapping[str, Any] | None = None,
) -> MeteredSite:
    """A site with one mirror and one MirrorMeterReading, as registration and a first mirror post leave
    them: for benches and tests of what comes after (readings, Responses, metering views)."""
    site = Site(lfdi=lfdi, sfdi=1, device_category=0, registration_pin=PIN, changed_s=now_s, created_s=now_s)
    session.add(site)
    session.flush()
    mup = MirrorUsagePoint(
        site_id=site.id, mrid=mup_mrid, role_flags=role_flags, service_category=0, status=1, changed_s=now_s
    )
    session.add(mup)
    session.flush()
    mmr = MirrorMeterReading(mup_id=mup.id, mrid=mmr_mrid, reading_type=dict(reading_type or {"uom": 38}))
    session.add(mmr)
    session.flush()
    return MeteredSite(site.id, mup.id, mmr.id)


def add_feeder_sites(
    session: Session,
    sites: Iterable[Mapping[str, object]],
    now_s: int,
    skip_nmis: Collection[object] = (),
    first_index: int = 0,
) -> None:
    """One registered, NMI-bound EndDevice per site of a network document, in one bulk insert.

    For feeders of thousands of sites, where `add_site` one at a time would dominate the set-up; the
    lFDI is the site's index (from `first_index`) in hex. Sites whose NMI is in `skip_nmis` are left
    for the caller to register through a real identity.
    """
    rows = [
        {
            "lfdi": f"{i:040X}",
            "sfdi": i,
            "aggregator_id": None,
            "device_category": 0,
            "nmi": s["nmi"],
            "registration_pin": PIN,
            "enabled": True,
            "created_s": now_s,
            "changed_s": now_s,
        }
        for i, s in enumerate((s for s in sites if s["nmi"] not in skip_nmis), start=first_index)
    ]
    session.execute(insert(Site), rows)


def add_controls(
    session: Session,
    site: Site,
    program: DerProgram,
    now_s: int,
    count: int,
    import_limit_w: int | None = None,
) -> None:
    """`count` consecutive 5-minute export limits from now, 100 W lower each, as an envelope set would be."""
    for i in range(count):
        create_control(
            session,
            site=site,
            program=program,
            mrid=new_mrid(0),
            start_s=now_s + 300 * i,
            duration_s=300,
            values=ControlValues(export_limit_w=5000 - 100 * i, import_limit_w=import_limit_w),
            now_s=now_s,
        )
