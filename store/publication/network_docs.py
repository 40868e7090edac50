"""Network documents in the store: many networks side by side, each known by its name and versioned.

A network's current version is the newest active row of its name. An NMI belongs to one active network
at a time: loading a network that names an NMI another network holds is refused (NetworkConflict),
unless the load says the sites move, when the other network's document loses them in the same
transaction, so the site's next publication comes from its new network only.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from gridshare.grid.netfile import NetworkFile, parse_network_document, rating_document
from gridshare.grid.network import Rating
from gridshare.store.change_feed import bump_change, network_key
from gridshare.store.db import bump_publication
from gridshare.store.models import EnvelopePointer, NetworkModel
from gridshare.store.publication.status import KEY_PREFIX as STATUS_PREFIX
from gridshare.store.runtime_settings import ServerSetting

#: Network names appear in URLs, change keys and log lines.
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class NetworkConflict(ValueError):
    """The document names NMIs that belong to other active networks (nmi -> network)."""

    def __init__(self, network: str, taken: dict[str, str]) -> None:
        self.network = network
        self.taken = taken
        shown = ", ".join(f"{nmi} (in {other})" for nmi, other in sorted(taken.items())[:10])
        more = f" and {len(taken) - 10} more" if len(taken) > 10 else ""
        super().__init__(
            f"network {network}: sites already belong to another network: {shown}{more}; "
            "load with move_sites to move them (a switching change)"
        )


def check_name(name: str) -> str:
    """A network name usable in a URL and a change key; ValueError says what is wrong."""
    if not name or len(name) > 64 or not set(name) <= NAME_CHARS:
        raise ValueError(
            f"network name {name!r}: 1-64 characters of letters, digits, '-', '_' and '.' are allowed"
        )
    return name


def json_document(document: Any) -> Any:
    """YAML dates and times as ISO 8601 strings, so the document can live in a JSON column."""
    return json.loads(json.dumps(document, default=lambda v: v.isoformat() if isinstance(v, date) else v))


def _nmis(document: dict[str, Any]) -> set[str]:
    return {str(s["nmi"]) for s in document.get("sites") or [] if isinstance(s, dict) and s.get("nmi")}


def store_network(
    session: Session,
    document: Any,
    loaded_by: str,
    now_s: int,
    *,
    move_sites: bool = False,
    replace_others: bool = False,
) -> tuple[NetworkModel, NetworkFile]:
    """Validate (NetworkError names the field) and make `document` the current version of its network.

    The network is the one the document names (`network.name`); other networks are untouched, except
    that with `move_sites` those holding NMIs this document names lose them (a new version of each),
    and with `replace_others` (the single-feeder `PUT /network`) every other network is retired.
    """
    document = json_document(document)
    nf = parse_network_document(document)
    name = check_name(nf.network.name)
    if replace_others:
        for retiring in active_names(session):
            if retiring != name:
                retire_network(session, retiring, now_s)
    mine = {s.nmi for s in nf.sites if s.nmi}
    taken: dict[str, str] = {}
    losing: list[NetworkModel] = []
    for other in active_networks(session):
        if other.name == name:
            continue
        overlap = mine & _nmis(other.document)
        if overlap:
            taken.update({nmi: other.name for nmi in overlap})
            losing.append(other)
    if taken and not move_sites:
        raise NetworkConflict(name, taken)
    for other in losing:
        doc = json.loads(json.dumps(other.document))
        doc["sites"] = [s for s in doc.get("sites") or [] if str(s.get("nmi")) not in mine]
        parse_network_document(doc)  # still a valid network without them (raises otherwise)
        _add_version(session, other.name, doc, f"{loaded_by} (sites moved to {name})", now_s)
    row = _add_version(session, name, document, loaded_by, now_s)
    return row, nf


def _add_version(
    session: Session, name: str, document: dict[str, Any], loaded_by: str, now_s: int
) -> NetworkModel:
    session.execute(update(NetworkModel).where(NetworkModel.name == name).values(active=False))
    row = NetworkModel(
        name=name, document=document, loaded_s=now_s, loaded_by=loaded_by[:64], active=True, retired_s=None
    )
    session.add(row)
    session.flush()
    bump_change(session, network_key(name))
    bump_publication(session)  # the operator's views, the engine's fingerprint and scopes see networks
    return row


def retire_network(session: Session, name: str, now_s: int) -> bool:
    """Take a network out of service: no current version, no published envelopes (its devices fall to
    their DefaultDERControl). False if there is no such active network."""
    found = session.execute(
        update(NetworkModel)
        .where(NetworkModel.name == name, NetworkModel.active.is_(True))
        .values(active=False, retired_s=now_s)
    ).rowcount  # type: ignore[attr-defined]
    if not found:
        return False
    session.execute(update(EnvelopePointer).where(EnvelopePointer.network == name).values(set_id=None))
    session.execute(delete(ServerSetting).where(ServerSetting.key == STATUS_PREFIX + name))
    bump_change(session, network_key(name))
    bump_publication(session)
    return True


def with_rating(
    document: dict[str, Any], asset: str, export_w: float | None, import_w: float | None
) -> dict[str, Any]:
    """A copy of the document with one branch's rating replaced; KeyError if there is no such branch.

    A direction left out keeps its present value, resolved from the parsed network, so the new rating
    is explicit whatever form (preset, kVA, amps) the old one had; it is written back in the
    document's kW by `rating_document`, the file format's one way out.
    """
    current = parse_network_document(document).network
    branch_now = next((b for b in current.branches if b.name == asset), None)
    if branch_now is None:
        raise KeyError(asset)
    old = branch_now.rating
    rating = rating_document(
        Rating(
            export_w=export_w if export_w is not None else (old.export_w if old else None),
            import_w=import_w if import_w is not None else (old.import_w if old else None),
        )
    )
    doc = json.loads(json.dumps(document))
    for branch in doc["network"]["branches"]:
        if branch.get("name") == asset:
            branch["rating"] = rating
    return doc


def active_document(session: Session, name: str) -> NetworkModel | None:
    """The current version of network `name` (None: no such network, or retired)."""
    return session.execute(
        select(NetworkModel)
        .where(NetworkModel.name == name, NetworkModel.active.is_(True))
        .order_by(NetworkModel.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def active_networks(session: Session) -> list[NetworkModel]:
    """The current version of every network in service, by name."""
    newest = (
        select(func.max(NetworkModel.id)).where(NetworkModel.active.is_(True)).group_by(NetworkModel.name)
    )
    rows = session.execute(select(NetworkModel).where(NetworkModel.id.in_(newest))).scalars().all()
    return sorted(rows, key=lambda r: r.name)


def active_names(session: Session) -> list[str]:
    """The names of the networks in service (cheap: no documents read)."""
    rows = session.execute(
        select(NetworkModel.name).where(NetworkModel.active.is_(True)).distinct()
    ).scalars()
    return sorted(rows)


def sole_network(session: Session) -> NetworkModel | None:
    """The one network in service when there is exactly one (the single-feeder API's "the network")."""
    names = active_names(session)
    return active_document(session, names[0]) if len(names) == 1 else None
