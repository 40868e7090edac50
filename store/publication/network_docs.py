"""Network documents in the store: validated, JSON-safe, versioned (the newest active one is used)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gridshare.grid.netfile import NetworkFile, parse_network_document, rating_document
from gridshare.grid.network import Rating
from gridshare.store.db import bump_publication
from gridshare.store.models import NetworkModel


def json_document(document: Any) -> Any:
    """YAML dates and times as ISO 8601 strings, so the document can live in a JSON column."""
    return json.loads(json.dumps(document, default=lambda v: v.isoformat() if isinstance(v, date) else v))


def store_network(
    session: Session, document: Any, loaded_by: str, now_s: int
) -> tuple[NetworkModel, NetworkFile]:
    """Validate (NetworkError names the field) and make `document` the active network."""
    document = json_document(document)
    nf = parse_network_document(document)
    session.execute(update(NetworkModel).where(NetworkModel.active.is_(True)).values(active=False))
    row = NetworkModel(
        name=nf.network.name[:64], document=document, loaded_s=now_s, loaded_by=loaded_by[:64], active=True
    )
    session.add(row)
    session.flush()
    bump_publication(session)
    return row, nf


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


def active_document(session: Session) -> NetworkModel | None:
    return session.execute(
        select(NetworkModel).where(NetworkModel.active.is_(True)).order_by(NetworkModel.id.desc()).limit(1)
    ).scalar_one_or_none()
