"""The networks the store holds, by name: each network's current version, parsed once.

Everything about "a network" goes through `network_named` or `list_networks`; an NMI belongs to one
network in service at a time (store.publication.network_docs), so a site is found in at most one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from gridshare.grid.netfile import NetworkFile, parse_network_document
from gridshare.grid.network import Site as NetworkSite
from gridshare.store.models import AssetDerate, NetworkModel, Site
from gridshare.store.publication.network_docs import active_document, active_networks


@dataclass(frozen=True)
class NetworkRef:
    """One loaded network: its stored version and its parsed document."""

    model: NetworkModel
    nf: NetworkFile

    @property
    def name(self) -> str:
        return self.model.name

    @cached_property
    def site_by_nmi(self) -> dict[str, NetworkSite]:
        return {s.nmi: s for s in self.nf.sites if s.nmi}

    @cached_property
    def branch_names(self) -> frozenset[str]:
        return frozenset(b.name for b in self.nf.network.branches)


VersionKey = tuple[str, int]
_PARSED: dict[VersionKey, NetworkFile] = {}


def version_key(model: NetworkModel) -> VersionKey:
    """A stored network version, across databases: a version id is unique only within its database
    (one process may hold several stores, as the tests do)."""
    session = object_session(model)
    bind = session.get_bind() if session is not None else None
    return (str(bind.engine.url) if bind is not None else "", model.id)


def _parsed(model: NetworkModel) -> NetworkFile:
    """Network documents never change once stored (a change is a new version), so parse each once."""
    key = version_key(model)
    nf = _PARSED.get(key)
    if nf is None:
        if len(_PARSED) > 16:
            _PARSED.clear()
        nf = _PARSED[key] = parse_network_document(model.document, source=f"network #{model.id}")
    return nf


def list_networks(session: Session) -> list[NetworkRef]:
    """Every network in service, by name."""
    return [NetworkRef(model, _parsed(model)) for model in active_networks(session)]


def network_named(session: Session, name: str) -> NetworkRef | None:
    model = active_document(session, name)
    return None if model is None else NetworkRef(model, _parsed(model))


def registered_sites(session: Session, net: NetworkRef) -> dict[str, Site]:
    """Store sites (EndDevices) bound to this network's sites, by network site id (through the NMI)."""
    nmis = list(net.site_by_nmi)
    if not nmis:
        return {}
    rows = session.execute(select(Site).where(Site.nmi.in_(nmis))).scalars().all()
    out: dict[str, Site] = {}
    for row in sorted(rows, key=lambda r: (not r.enabled, r.id)):
        nsite = net.site_by_nmi.get(row.nmi or "")
        if nsite is not None and nsite.id not in out:
            out[nsite.id] = row
    return out


def network_site_of(session: Session, site: Site) -> tuple[NetworkRef, NetworkSite] | None:
    """The network and network site a store site is bound to (by NMI), if any."""
    for net in list_networks(session):
        found = net.site_by_nmi.get(site.nmi or "")
        if found is not None:
            return net, found
    return None


def derates(session: Session, net: NetworkRef, now_s: int) -> tuple[list[AssetDerate], list[AssetDerate]]:
    """(in force now, planned) derates and outages on this network's assets, not cleared or ended.

    Asset names are unique only within a network: a derate counts here when it names this network, or
    (a row from before networks were named) names none and its asset is one of this network's."""
    rows = session.execute(
        select(AssetDerate)
        .where(
            AssetDerate.cleared_s.is_(None),
            (AssetDerate.until_s.is_(None)) | (AssetDerate.until_s > now_s),
        )
        .order_by(AssetDerate.from_s, AssetDerate.id)
    ).scalars()
    mine = [d for d in rows if d.network == net.name or (d.network is None and d.asset in net.branch_names)]
    return [d for d in mine if d.from_s <= now_s], [d for d in mine if d.from_s > now_s]
