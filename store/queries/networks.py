"""Queries about networks by name for the operator API: their recomputations and derates.

A network is known by its name and has many stored versions (network_model rows); an envelope set
points at the version it was computed on, so "a network's recomputations" joins on the name.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from gridshare.store.models import AssetDerate, EnvelopeSetRecord, NetworkModel


def ever_loaded(session: Session, name: str) -> bool:
    """A network of this name was stored at some time (in service or retired)."""
    return (
        session.execute(select(NetworkModel.id).where(NetworkModel.name == name).limit(1)).first() is not None
    )


def envelope_sets(network: str | None = None) -> Select[EnvelopeSetRecord]:
    """Recomputations newest first, of one network (any of its versions) or of all."""
    query = select(EnvelopeSetRecord)
    if network is not None:
        query = query.join(NetworkModel, NetworkModel.id == EnvelopeSetRecord.network_id).where(
            NetworkModel.name == network
        )
    return query.order_by(EnvelopeSetRecord.id.desc())


def last_recomputation(session: Session, network: str, status: str | None = None) -> EnvelopeSetRecord | None:
    """The network's newest recomputation (with `status`, the newest of that status), any version."""
    query = envelope_sets(network)
    if status is not None:
        query = query.where(EnvelopeSetRecord.status == status)
    return session.execute(query.limit(1)).scalar_one_or_none()


def names_by_version(session: Session, version_ids: Iterable[int | None]) -> dict[int, str]:
    """Network names of these stored versions (for labelling sets and metrics by network)."""
    ids = sorted({i for i in version_ids if i is not None})
    if not ids:
        return {}
    rows = session.execute(select(NetworkModel.id, NetworkModel.name).where(NetworkModel.id.in_(ids)))
    return {int(i): str(n) for i, n in rows}


def derates_of(network: str | None = None, assets: Iterable[str] = ()) -> Select[AssetDerate]:
    """Derates newest first, of one network or of all. Rows from before networks were named have no
    network: the engine applies them wherever their asset exists, so they are listed under a network
    when their asset is one of its `assets`."""
    query = select(AssetDerate)
    if network is not None:
        query = query.where(
            (AssetDerate.network == network)
            | (AssetDerate.network.is_(None) & AssetDerate.asset.in_(sorted(set(assets))))
        )
    return query.order_by(AssetDerate.id.desc())
