"""Derates and outages: the one place that writes them, for the JSON API and the console alike."""

from __future__ import annotations

from fastapi import HTTPException

from gridshare.server.operator.audit import Change
from gridshare.server.operator.errors import FieldError
from gridshare.server.operator.network_schemas import DerateIn
from gridshare.store.models import AssetDerate
from gridshare.store.publication.network_docs import active_document, active_names


def add_derate(change: Change, body: DerateIn, actor: str) -> AssetDerate:
    """Write the derate in the caller's audited transaction; 422 naming `asset` if the network has none."""
    network = body.network
    if network is None:
        names_in_service = active_names(change.session)
        if not names_in_service:
            raise HTTPException(404, "no network is loaded (load one with PUT /networks/{name})")
        if len(names_in_service) > 1:
            raise FieldError(
                ("body", "network"),
                f"is required: {len(names_in_service)} networks are loaded and asset names are unique "
                "only within one",
            )
        network = names_in_service[0]
    current = active_document(change.session, network)
    if current is None:
        raise FieldError(("body", "network"), f"no network named {network!r} is in service")
    names = {b["name"] for b in current.document["network"]["branches"]}
    if body.asset not in names:
        raise FieldError(("body", "asset"), f"no asset named {body.asset!r} in network {network}")
    if body.until_s is not None and body.until_s <= change.now_s:
        raise FieldError(
            ("body", "until_s"), "is not in the future: the derate would never apply (it ends before now)"
        )
    row = AssetDerate(
        network=network,
        asset=body.asset,
        factor=body.factor,
        reason=body.reason,
        from_s=body.from_s if body.from_s is not None else change.now_s,
        until_s=body.until_s,
        created_s=change.now_s,
        created_by=actor,
    )
    change.session.add(row)
    change.session.flush()
    change.target = f"asset:{body.asset}"
    change.details = body.model_dump()
    return row


def clear_derate(change: Change, derate_id: int) -> AssetDerate:
    row = change.session.get(AssetDerate, derate_id)
    if row is None:
        raise HTTPException(404, "no such derate")
    if row.cleared_s is None:
        row.cleared_s = change.now_s
    change.target = f"derate:{derate_id}"
    return row
