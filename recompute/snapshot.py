"""Everything one recomputation reads from the store: the constraints first, then the measurements.

Reading it all up front means the computation (which may take a while) holds no session, and the
publisher can tell whether a constraint changed meanwhile by comparing fingerprints.

The two parts are read apart on purpose. The constraints (network, agreements, derates, registered
sites, device ratings) are all fallback limits need; the measurements (telemetry) are what devices
send, so whatever goes wrong reading them leaves the constraints in hand and fallback publishable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridshare.core.settings import Settings
from gridshare.envelopes.forecast import Telemetry
from gridshare.grid.agreement_records import apply_agreement_records, record_key
from gridshare.grid.derates import DeratedNetwork, apply_derates
from gridshare.grid.netfile import NetworkFile
from gridshare.recompute.inputs import (
    active_derates,
    active_network,
    device_ratings_w,
    inputs_fingerprint,
    latest_telemetry,
    newest_telemetry_s,
    operator_agreements,
    registered_sites,
    standing_derates,
)
from gridshare.store.models import AssetDerate, DefaultDerControl, DerProgram, NetworkModel, Site
from gridshare.store.publication.fallback_defaults import OVERRIDE_PREFIX
from gridshare.store.runtime_settings import ServerSetting


@dataclass(frozen=True)
class RunInputs:
    now_s: int
    fingerprint: tuple[object, ...]
    model: NetworkModel
    nf: NetworkFile
    derated: DeratedNetwork  # derates in force now (who is cut off now)
    #: in force now or later: fallback limits count them all, envelopes each over the intervals it covers
    standing: list[AssetDerate]
    store_sites: dict[str, Site]  # by NMI, enabled sites the network file names
    telemetry: dict[str, Telemetry]  # by NMI, recent readings
    newest_telemetry_s: int | None  # newest reading any of those sites ever posted
    program: DerProgram | None  # the envelope program (first by primacy)
    rated_w: dict[str, float]  # device ratings by network site id, where devices reported one
    defaults_marker: tuple[object, ...] = ()  # changes whenever anyone writes or deletes a site default
    #: network site id -> why its telemetry is not trusted: those sites get fallback limits this run
    untrusted: dict[str, str] = field(default_factory=dict)
    #: the operator's agreements applied to `nf`, comparable (by NMI): the fallback limits depend on them
    agreements: tuple[object, ...] = ()

    @property
    def feeder(self) -> str:
        return self.model.name

    @cached_property
    def nmi_to_site_id(self) -> dict[str, str]:
        return {s.nmi: s.id for s in self.nf.sites if s.nmi}


def defaults_marker(session: Session, program_id: int, site_ids: list[int]) -> tuple[object, ...]:
    """Changes whenever anyone writes or deletes the default of one of these sites (one network's) in
    the program, or an override of one.

    Every write of a DefaultDerControl bumps its version, so (count, sum of versions) moves on any
    write, the engine's own included. Only the network's own sites count: another network's defaults
    being written must not make this network's fallback limits look out of date.
    """
    if not site_ids:
        return (0, 0, 0)
    count, versions = session.execute(
        select(func.count(DefaultDerControl.id), func.sum(DefaultDerControl.version)).where(
            DefaultDerControl.program_id == program_id, DefaultDerControl.site_id.in_(site_ids)
        )
    ).one()
    overrides = session.execute(
        select(func.count(ServerSetting.key)).where(
            ServerSetting.key.in_([f"{OVERRIDE_PREFIX}{i}" for i in site_ids])
        )
    ).scalar_one()
    return (int(count or 0), int(versions or 0), int(overrides or 0))


def read_constraints(session: Session, now_s: int, network: str) -> RunInputs | None:
    """Network, derates, registered sites, ratings and program, without telemetry. None: no such
    network (never loaded, or retired)."""
    fingerprint = inputs_fingerprint(session, network)
    loaded = active_network(session, network)
    if loaded is None:
        return None
    model, nf = loaded
    derated = apply_derates(nf.network, active_derates(session, now_s, network))
    standing = standing_derates(session, now_s, network)
    nmi_to_site_id = {s.nmi: s.id for s in nf.sites if s.nmi}
    store_sites = registered_sites(session, set(nmi_to_site_id))
    # The operator's agreement of a registered site wins over the network file's (grid/agreement_records.py).
    records = operator_agreements(session, [s.id for s in store_sites.values()])
    by_nmi = {nmi: records[s.id] for nmi, s in store_sites.items() if s.id in records}
    nf = apply_agreement_records(nf, by_nmi)
    ratings = device_ratings_w(session, [s.id for s in store_sites.values()])
    rated_w = {nmi_to_site_id[n]: ratings[s.id] for n, s in store_sites.items() if s.id in ratings}
    program = (
        session.execute(select(DerProgram).order_by(DerProgram.primacy, DerProgram.id)).scalars().first()
    )
    marker = (
        defaults_marker(session, program.id, sorted(s.id for s in store_sites.values()))
        if program is not None
        else ()
    )
    return RunInputs(
        now_s=now_s,
        fingerprint=fingerprint,
        model=model,
        nf=nf,
        derated=derated,
        standing=standing,
        store_sites=store_sites,
        telemetry={},
        newest_telemetry_s=None,
        program=program,
        rated_w=rated_w,
        defaults_marker=marker,
        agreements=tuple(sorted((nmi, record_key(r)) for nmi, r in by_nmi.items())),
    )


def read_measurements(session: Session, inputs: RunInputs, settings: Settings) -> RunInputs:
    """`inputs` with recent telemetry, the newest reading's time and the sites whose data is untrusted."""
    network_sites = {s.nmi: s for s in inputs.nf.sites if s.nmi}
    sites = {nmi: (site.id, network_sites[nmi]) for nmi, site in inputs.store_sites.items()}
    read = latest_telemetry(
        session,
        sites,
        inputs.now_s,
        settings.envelope_interval_s * 3,
        future_tolerance_s=settings.reading_future_tolerance_s,
        plausible_factor=settings.reading_plausible_factor,
    )
    newest = newest_telemetry_s(
        session, [s.id for s in inputs.store_sites.values()], inputs.now_s, settings.telemetry_max_age_s
    )
    return replace(
        inputs,
        telemetry=read.telemetry,
        newest_telemetry_s=newest,
        untrusted={network_sites[nmi].id: why for nmi, why in read.untrusted.items()},
    )
