"""What the engine needs from the store: the active network with today's derates, and telemetry."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, case, cast, func, select
from sqlalchemy.orm import Session

from gridshare.envelopes.forecast import Telemetry
from gridshare.grid.agreement_records import record_key
from gridshare.grid.netfile import NetworkFile, parse_network_document
from gridshare.grid.network import Site as NetworkSite
from gridshare.recompute import bounds
from gridshare.store.models import (
    AssetDerate,
    ConnectionAgreement,
    Der,
    MirrorMeterReading,
    MirrorUsagePoint,
    NetworkModel,
    Site,
    TelemetryReading,
)
from gridshare.store.publication.network_docs import active_document
from gridshare.store.runtime_settings import ServerSetting

log = logging.getLogger("gridshare.recompute")

#: 2030.5 ReadingType: uom 38 is watts; flowDirection 1 is forward (import), 19 reverse (export).
UOM_W, FORWARD, REVERSE = 38, 1, 19
#: ServerSetting key the operator API sets to ask for a recomputation now.
RECOMPUTE_REQUEST = "recompute_requested_s"


def of_network(network: str) -> Any:
    """Derates of this network's assets (and rows from before networks were named, wherever their
    asset exists): asset names are unique only within a network."""
    return (AssetDerate.network == network) | AssetDerate.network.is_(None)


def active_network(session: Session, network: str) -> tuple[NetworkModel, NetworkFile] | None:
    row = active_document(session, network)
    if row is None:
        return None
    return row, parse_network_document(row.document, source=f"network #{row.id} ({row.name})")


def active_derates(session: Session, at_s: int, network: str) -> list[AssetDerate]:
    return list(
        session.execute(
            select(AssetDerate).where(
                of_network(network),
                AssetDerate.cleared_s.is_(None),
                AssetDerate.from_s <= at_s,
                (AssetDerate.until_s.is_(None)) | (AssetDerate.until_s > at_s),
            )
        )
        .scalars()
        .all()
    )


def registered_sites(session: Session, nmis: set[str]) -> dict[str, Site]:
    """Store sites whose NMI names a site of the network file (the link between the two).

    One network site's envelope is a promise for one connection point, so an NMI two EndDevices hold
    (the store's unique index forbids it; a database without it, or a hand edit, may not) goes to
    neither: both stay on their DefaultDERControl, the limit meant for a device the engine cannot place,
    until the operator binds the NMI to one of them.
    """
    rows = session.execute(select(Site).where(Site.nmi.in_(nmis), Site.enabled.is_(True))).scalars().all()
    by_nmi: dict[str, list[Site]] = {}
    for s in rows:
        if s.nmi:
            by_nmi.setdefault(s.nmi, []).append(s)
    for nmi, holders in by_nmi.items():
        if len(holders) > 1:
            log.warning(
                "NMI %s is held by EndDevices %s: none of them gets its envelope until the operator binds it "
                "to one (PUT /nmis/%s/site)",
                nmi,
                sorted(s.id for s in holders),
                nmi,
            )
    return {nmi: holders[0] for nmi, holders in by_nmi.items() if len(holders) == 1}


@dataclass(frozen=True)
class TelemetryRead:
    """Recent telemetry by NMI, and the sites whose recent readings cannot be trusted (NMI -> why)."""

    telemetry: dict[str, Telemetry]
    untrusted: dict[str, str]


def latest_telemetry(
    session: Session,
    sites: dict[str, tuple[int, NetworkSite]],
    now_s: int,
    window_s: int,
    *,
    future_tolerance_s: int,
    plausible_factor: float,
) -> TelemetryRead:
    """Latest site-level real power per NMI (by `sites`: NMI -> (store site id, network site)).

    Readings count by when the server received them (the last `window_s`), never by the date the
    device put on them: a reading dated years ahead cannot stay "latest" for years. A site with one
    untrustworthy recent reading (dated after its receipt, or an impossible power) gets no telemetry
    and is reported in `untrusted`: the engine puts that site, not the feeder, on fallback limits.

    Only net power is mirrored at the connection point, so a site exporting 3 kW reads as 3 kW of
    generation and no load: the persistence forecast then carries the net flow forward.
    """
    if not sites:
        return TelemetryRead({}, {})
    nmi_by_site = {store_id: nmi for nmi, (store_id, _) in sites.items()}
    rows = session.execute(
        select(
            MirrorUsagePoint.site_id,
            MirrorMeterReading.reading_type,
            TelemetryReading.time_s,
            TelemetryReading.received_s,
            TelemetryReading.value,
            TelemetryReading.power_of_ten,
        )
        .join(MirrorMeterReading, MirrorMeterReading.mup_id == MirrorUsagePoint.id)
        .join(TelemetryReading, TelemetryReading.mmr_id == MirrorMeterReading.id)
        .where(
            MirrorUsagePoint.site_id.in_(list(nmi_by_site)), TelemetryReading.received_s >= now_s - window_s
        )
        .order_by(TelemetryReading.received_s, TelemetryReading.id)
    ).all()
    latest: dict[str, tuple[int, float]] = {}
    untrusted: dict[str, str] = {}
    for site_id, reading_type, time_s, received_s, value, power_of_ten in rows:
        kind = reading_type if isinstance(reading_type, dict) else {}
        if kind.get("uom") != UOM_W or kind.get("flowDirection") not in (FORWARD, REVERSE):
            continue
        nmi = nmi_by_site[site_id]
        network_site = sites[nmi][1]
        watts = bounds.reading_w(value, power_of_ten)
        problem = bounds.reading_problem(
            time_s,
            received_s,
            watts,
            future_tolerance_s=future_tolerance_s,
            plausible_max_w=bounds.plausible_w(
                network_site.max_export_w, network_site.max_import_w, plausible_factor
            ),
        )
        if problem is not None:
            untrusted.setdefault(nmi, problem)
            continue
        assert watts is not None  # reading_problem refuses a None power
        at_s = min(bounds.effective_time_s(time_s, received_s), now_s)
        if at_s < now_s - window_s:
            continue  # received lately, but about the past: not what the site does now
        net_export = -watts if kind.get("flowDirection") == FORWARD else watts
        if nmi not in latest or at_s >= latest[nmi][0]:
            latest[nmi] = (at_s, net_export)
    telemetry = {
        nmi: Telemetry(datetime.fromtimestamp(t, UTC), load_w=max(-w, 0.0), generation_w=max(w, 0.0))
        for nmi, (t, w) in latest.items()
        if nmi not in untrusted
    }
    return TelemetryRead(telemetry, untrusted)


def _bounded_watts(column: Any) -> Any:
    """Whole watts in SQL, -1 when absent and -2 when unbelievable (NaN, infinite, beyond 1 GW).

    Without the bound a stored rating of 1e300 W would overflow the cast on PostgreSQL and fail every
    fingerprint, hence every recomputation.
    """
    believable = (column >= 0) & (column <= bounds.MAX_RATING_W)
    return case((column.is_(None), -1), (believable, cast(func.round(column), BigInteger)), else_=-2)


def device_ratings_fingerprint(session: Session) -> tuple[object, ...]:
    """Changes whenever a device reports another rating (DERCapability rtgMaxW, DERSettings setMaxW).

    Those ratings set P_j, hence the default's ramp rate and the envelopes' gross limits. Only the values
    count, not when they were sent: a device re-sending the same document every poll changes nothing.
    Aggregates (whole watts, weighted by site so that two devices trading values still show) keep this
    one cheap query however many devices there are.
    """
    rtg = _bounded_watts(Der.rtg_max_w)
    setmax = _bounded_watts(Der.set_max_w)
    row = session.execute(
        select(
            func.count(Der.id),
            func.sum(rtg),
            func.sum(setmax),
            func.sum(rtg * Der.site_id),
            func.sum(setmax * Der.site_id),
        )
    ).one()
    return tuple(int(v or 0) for v in row)


def operator_agreements(session: Session, site_ids: list[int]) -> dict[int, ConnectionAgreement]:
    """The operator's connection agreements of these store sites, by store site id."""
    if not site_ids:
        return {}
    rows = session.execute(select(ConnectionAgreement).where(ConnectionAgreement.site_id.in_(site_ids)))
    return {row.site_id: row for row in rows.scalars()}


def agreements_fingerprint(session: Session) -> str:
    """Changes whenever the operator writes, changes or deletes a connection agreement.

    Rows are changed in place and carry no version, so their contents are hashed; there is at most one
    per site, and most sites take theirs from the network file.
    """
    rows = session.execute(select(ConnectionAgreement).order_by(ConnectionAgreement.site_id)).scalars()
    basis = [(row.site_id, record_key(row)) for row in rows]
    return hashlib.sha256(repr(basis).encode()).hexdigest()


def inputs_fingerprint(session: Session, network: str) -> tuple[object, ...]:
    """Changes whenever this network is loaded, a derate of it is added or cleared, a recomputation is
    requested, a device reports another rating, or the operator changes a connection agreement.

    The first three entries and the last (the operator's agreements) are the constraints envelopes
    depend on (`run._constraints`); a new rating changes the defaults and the envelopes' gross limits,
    not what the network can carry.
    """
    return inputs_fingerprints(session, [network])[network]


def inputs_fingerprints(session: Session, networks: list[str]) -> dict[str, tuple[object, ...]]:
    """`inputs_fingerprint` of every network named, in a fixed number of queries however many there
    are (the watch looks at all of them every `change_poll_s`)."""
    versions = dict(
        session.execute(
            select(NetworkModel.name, func.max(NetworkModel.id))
            .where(NetworkModel.name.in_(networks))
            .group_by(NetworkModel.name)
        ).all()
    )
    derates: dict[str | None, tuple[int, int]] = {
        net: (int(top or 0), int(cleared or 0))
        for net, top, cleared in session.execute(
            select(AssetDerate.network, func.max(AssetDerate.id), func.count(AssetDerate.cleared_s)).group_by(
                AssetDerate.network
            )
        ).all()
    }
    requested = session.get(ServerSetting, RECOMPUTE_REQUEST)
    ratings = device_ratings_fingerprint(session)
    agreements = agreements_fingerprint(session)
    unnamed_top, unnamed_cleared = derates.get(None, (0, 0))
    out: dict[str, tuple[object, ...]] = {}
    for name in networks:
        top, cleared = derates.get(name, (0, 0))
        both_top = max(top, unnamed_top) or None
        out[name] = (
            versions.get(name),
            both_top,
            cleared + unnamed_cleared,
            requested.value if requested else None,
            ratings,
            agreements,
        )
    return out


def standing_derates(session: Session, at_s: int, network: str) -> list[AssetDerate]:
    """Derates in force now or scheduled for later (not cleared, not expired).

    Fallback limits count them all: a device may sit on its default through the start of a planned
    outage, long after the server last reached it.
    """
    return list(
        session.execute(
            select(AssetDerate).where(
                of_network(network),
                AssetDerate.cleared_s.is_(None),
                (AssetDerate.until_s.is_(None)) | (AssetDerate.until_s > at_s),
            )
        )
        .scalars()
        .all()
    )


def newest_telemetry_s(session: Session, site_ids: list[int], now_s: int, max_age_s: int) -> int | None:
    """How recent the newest reading of these sites is, as the server knows it (None: never any).

    A reading counts from its own date but never later than when the server received it, so a device
    clock ten years ahead cannot make a stopped feed look fresh. Readings received within `max_age_s`
    are looked at first (an index on the receipt time); if there are none, the last receipt time says
    how long the feed has been quiet.
    """
    if not site_ids:
        return None
    joined = (
        select()
        .select_from(TelemetryReading)
        .join(MirrorMeterReading, TelemetryReading.mmr_id == MirrorMeterReading.id)
        .join(MirrorUsagePoint, MirrorMeterReading.mup_id == MirrorUsagePoint.id)
        .where(MirrorUsagePoint.site_id.in_(site_ids))
    )
    effective = case(
        (TelemetryReading.time_s < TelemetryReading.received_s, TelemetryReading.time_s),
        else_=TelemetryReading.received_s,
    )
    recent = session.execute(
        joined.add_columns(func.max(effective)).where(
            TelemetryReading.received_s >= now_s - max(max_age_s, 0)
        )
    ).scalar_one_or_none()
    if recent is not None:
        return min(int(recent), now_s)
    last = session.execute(joined.add_columns(func.max(TelemetryReading.received_s))).scalar_one_or_none()
    return None if last is None else min(int(last), now_s)


def device_ratings_w(session: Session, site_ids: list[int]) -> dict[int, float]:
    """Largest believable DER rating (rtgMaxW or setMaxW, W) each site's devices reported, if any did."""
    if not site_ids:
        return {}
    out: dict[int, float] = {}
    rows = session.execute(
        select(Der.site_id, Der.rtg_max_w, Der.set_max_w).where(Der.site_id.in_(site_ids))
    ).all()
    for site_id, rtg, setmax in rows:
        best = max(
            (w for w in (bounds.rating_w(rtg), bounds.rating_w(setmax)) if w is not None), default=None
        )
        if best is not None:
            out[site_id] = max(out.get(site_id, 0.0), float(best))
    return out
