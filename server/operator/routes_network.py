"""The networks the envelopes are computed on: load them, change a rating, derate or take an asset out.

The store holds many networks, each known by its name: `PUT /networks/{name}` adds or replaces one,
`DELETE /networks/{name}` takes it out of service, and ratings and derates name their network in the
path. `PUT /network` and friends are the single-feeder API (one network in service), kept as it was.
Every change here is picked up by the recomputation watcher within seconds (and by the next scheduled
run at the latest), so devices get envelopes that respect it without anyone restarting anything.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gridshare.grid.agreements import Dynamic
from gridshare.grid.netfile import NetworkFile, parse_network_document
from gridshare.grid.network import NetworkError
from gridshare.grid.units import W_PER_KW
from gridshare.recompute.inputs import RECOMPUTE_REQUEST
from gridshare.server.operator.audit import Change, Writer, writer
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.errors import FieldError
from gridshare.server.operator.network_schemas import (
    AssetOut,
    DerateIn,
    DerateOut,
    EnvelopeSetOut,
    NetworkOut,
    RatingIn,
)
from gridshare.server.operator.schemas import Page
from gridshare.server.operator.services import derates
from gridshare.store.models import NetworkModel
from gridshare.store.publication.network_docs import (
    NetworkConflict,
    active_document,
    active_names,
    check_name,
    json_document,
    retire_network,
    sole_network,
    store_network,
    with_rating,
)
from gridshare.store.queries.networks import derates_of, envelope_sets, ever_loaded, names_by_version
from gridshare.store.queries.paging import page_of
from gridshare.store.queries.runtime_settings import set_setting

router = APIRouter(tags=["network"])

MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
#: A network's name in a path (PUT also checks its characters: network_docs.check_name).
Name = Annotated[
    str, Path(min_length=1, max_length=64, description="the network's name (its document's `name`)")
]


def _summary(row: NetworkModel, nf: NetworkFile) -> NetworkOut:
    return NetworkOut(
        id=row.id,
        name=row.name,
        loaded_s=row.loaded_s,
        loaded_by=row.loaded_by,
        nodes=len(nf.network.nodes),
        sites=len(nf.sites),
        dynamic_sites=sum(1 for s in nf.sites if isinstance(s.agreement, Dynamic)),
        assets=[
            AssetOut(
                name=b.name,
                kind=b.kind,
                from_node=b.from_node,
                to_node=b.to_node,
                export_w=b.rating.export_w if b.rating else None,
                import_w=b.rating.import_w if b.rating else None,
                export_kw=_kw(b.rating.export_w) if b.rating else None,
                import_kw=_kw(b.rating.import_w) if b.rating else None,
                rating_source=b.rating.source if b.rating else "unrated",
            )
            for b in nf.network.branches
        ],
    )


def _kw(watts: float | None) -> float | None:
    """The deprecated kW alias of a W figure in the API's answer."""
    return None if watts is None else watts / W_PER_KW


def _field_error(exc: NetworkError) -> FieldError:
    problems = getattr(exc, "problems", None) or []
    pairs = [(("body", *_loc(p.path)), p.message) for p in problems]
    if not pairs:
        pairs = [(("body",), str(exc))]
    return FieldError(pairs[0][0], pairs[0][1], *pairs[1:])


def _loc(path: str) -> list[str | int]:
    """`sites[4].node` -> ["sites", 4, "node"], the way FastAPI names nested fields."""
    parts = path.replace("[", ".").replace("]", "").split(".") if path else []
    return [int(x) if x.isdigit() else x for x in parts if x]


async def _document(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_DOCUMENT_BYTES:
        raise HTTPException(413, f"network document larger than {MAX_DOCUMENT_BYTES} bytes")
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        if kind in ("application/yaml", "application/x-yaml", "text/yaml"):
            return yaml.safe_load(body)
        if kind == "application/json":
            return json.loads(body)
    except (yaml.YAMLError, ValueError) as exc:
        raise FieldError(("body",), f"not a readable {kind} document: {str(exc).splitlines()[0]}") from None
    raise HTTPException(415, "send the network as application/json or application/yaml")


@router.put(
    "/network",
    response_model=NetworkOut,
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {}, "application/yaml": {}},
            "description": "a network document (docs/network-format.md)",
        }
    },
)
async def load_network(request: Request, w: Writer = Depends(writer)) -> NetworkOut:
    """Make this the only network in service (the single-feeder API: other networks are retired; the
    old version is kept, inactive); envelopes are recomputed on it. `/networks/{name}` adds networks."""
    document = await _document(request)
    # Parsing and storing a large network takes a while: on a worker thread, not the event loop that
    # also serves the devices' port in the first serving process.
    return await run_in_threadpool(_load_sole_network, w, document)


def _load_sole_network(w: Writer, document: Any) -> NetworkOut:
    with w.transaction("network.load") as change:
        try:
            row, nf = store_network(
                change.session, document, w.caller.name, change.now_s, replace_others=True
            )
        except NetworkError as exc:
            raise _field_error(exc) from None
        except ValueError as exc:  # the name (store.publication.network_docs.check_name)
            raise FieldError(("body", "name"), str(exc)) from None
        change.target, change.details = f"network:{row.id}", {"name": row.name, "sites": len(nf.sites)}
        return _summary(row, nf)


@router.get("/network", response_model=NetworkOut)
def get_network(session: Session = Depends(read_session)) -> NetworkOut:
    row = _sole(session)
    return _summary(row, parse_network_document(row.document))


def _sole(session: Session) -> NetworkModel:
    """The network of the single-feeder endpoints: 409 when several are loaded (name one instead)."""
    names = active_names(session)
    if len(names) > 1:
        raise HTTPException(
            409, f"{len(names)} networks are loaded: use /networks/{{name}} (one of {', '.join(names[:5])})"
        )
    return found(sole_network(session), "network (load one with PUT /network)")


@router.put("/network/assets/{asset}/rating", response_model=NetworkOut)
def set_rating(asset: str, body: RatingIn, w: Writer = Depends(writer)) -> NetworkOut:
    """A new rating (e.g. after an upgrade) as a new version of the network."""
    with w.transaction("network.rating", f"asset:{asset}") as change:
        current = _sole(change.session)
        change.details = body.model_dump(exclude_none=True)
        return _rerated(change, current, asset, body, w.caller.name, "the active network")


def _rerated(
    change: Change, current: NetworkModel, asset: str, body: RatingIn, actor: str, where: str
) -> NetworkOut:
    """Store a new version of `current` with `asset` re-rated; 404 naming `where` if it has no such asset."""
    try:
        document = with_rating(current.document, asset, body.rating_w("export"), body.rating_w("import"))
    except KeyError:
        raise HTTPException(404, f"no asset named {asset!r} in {where}") from None
    try:
        row, nf = store_network(change.session, document, actor, change.now_s)
    except NetworkError as exc:
        raise _field_error(exc) from None
    return _summary(row, nf)


@router.post("/derates", status_code=201, response_model=DerateOut)
def add_derate(body: DerateIn, w: Writer = Depends(writer)) -> DerateOut:
    """Derate an asset (factor < 1) or take it out (factor 0); the recomputation follows at once."""
    with w.transaction("derate.add", f"asset:{body.asset}") as change:
        return DerateOut.model_validate(derates.add_derate(change, body, w.caller.name))


@router.get("/derates", response_model=Page[DerateOut])
def list_derates(
    session: Session = Depends(read_session),
    p: Paging = Depends(paging),
    network: str | None = Query(None, min_length=1, max_length=64, description="only this network's"),
) -> Page:
    if network is not None:
        return _network_derates(session, _in_service(session, network), p)
    total, rows = page_of(session, derates_of(), start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[DerateOut.model_validate(r) for r in rows])


@router.delete("/derates/{derate_id}", status_code=204)
def clear_derate(derate_id: Id, w: Writer = Depends(writer)) -> Response:
    """End a derate now (the asset is back at its rating on the next recomputation)."""
    with w.transaction("derate.clear", f"derate:{derate_id}") as change:
        derates.clear_derate(change, derate_id)
    return Response(status_code=204)


@router.get("/envelopes", response_model=Page[EnvelopeSetOut])
def list_envelope_sets(
    session: Session = Depends(read_session),
    p: Paging = Depends(paging),
    network: str | None = Query(
        None, min_length=1, max_length=64, description="only this network's (in service or retired)"
    ),
) -> Page:
    """Recent recomputations, newest first: published, skipped (and why) or failed (and why)."""
    if network is not None and not ever_loaded(session, network):
        raise HTTPException(404, f"no network named {network!r} was ever loaded{_known(session)}")
    total, rows = page_of(session, envelope_sets(network), start=p.start, limit=p.limit)
    names = names_by_version(session, (r.network_id for r in rows))
    items = [
        EnvelopeSetOut.model_validate(r).model_copy(update={"network": names.get(r.network_id or -1)})
        for r in rows
    ]
    return Page(total=total, start=p.start, items=items)


@router.post("/envelopes/recompute", status_code=202)
def request_recompute(w: Writer = Depends(writer)) -> dict[str, str]:
    """Ask for a recomputation now (the watcher runs it within seconds)."""
    with w.transaction("envelopes.recompute") as change:
        set_setting(change.session, RECOMPUTE_REQUEST, change.now_s, change.now_s)
    return {"status": "requested"}


# --- many networks, by name ---------------------------------------------------------------------------


def _known(session: Session) -> str:
    names = active_names(session)
    return f" (in service: {', '.join(names[:10])})" if names else " (none is in service)"


def _in_service(session: Session, name: str) -> NetworkModel:
    """The current version of network `name`, or a 404 naming the networks that are in service."""
    row = active_document(session, name)
    if row is None:
        raise HTTPException(404, f"no network named {name!r} is in service{_known(session)}")
    return row


def _network_derates(session: Session, row: NetworkModel, p: Paging) -> Page:
    assets = [b["name"] for b in row.document["network"]["branches"]]
    total, rows = page_of(session, derates_of(row.name, assets), start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[DerateOut.model_validate(r) for r in rows])


def _named_document(document: Any, name: str) -> Any:
    """The document of `PUT /networks/{name}`, checked to be that network: 422 naming what is wrong."""
    try:
        check_name(name)
    except ValueError as exc:
        raise FieldError(("path", "name"), str(exc)) from None
    if not isinstance(document, dict):
        raise FieldError(("body",), "a network document is a mapping (docs/network-format.md)")
    given = document.get("name")
    if given != name:
        said = "has no name" if given is None else f"is named {given!r}"
        raise FieldError(
            ("body", "name"), f"must be the network's name in the path ({name!r}); the document {said}"
        )
    try:
        parse_network_document(json_document(document))
    except NetworkError as exc:
        raise _field_error(exc) from None
    return document


@router.put(
    "/networks/{name}",
    response_model=NetworkOut,
    responses={
        201: {"description": "a network new to service", "model": NetworkOut},
        409: {"description": "sites named by another network (send move_sites=true to move them)"},
    },
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {}, "application/yaml": {}},
            "description": "a network document (docs/network-format.md) whose `name` is the path's",
        }
    },
)
async def put_network(
    name: Name,
    request: Request,
    response: Response,
    move_sites: bool = Query(
        False,
        description="sites (NMIs) another network holds move here, leaving it (a switching change); "
        "without it such a load is refused with 409",
    ),
    w: Writer = Depends(writer),
) -> NetworkOut:
    """Add network `name`, or replace it with a new version; other networks are untouched (except,
    with `move_sites`, those losing the sites). Envelopes are recomputed on it within seconds."""
    document = _named_document(await _document(request), name)
    return await run_in_threadpool(_put_named_network, w, name, document, response, move_sites)


def _put_named_network(
    w: Writer, name: str, document: Any, response: Response, move_sites: bool
) -> NetworkOut:
    with w.transaction("network.load", f"network:{name}") as change:
        existed = active_document(change.session, name) is not None
        moved: dict[str, str] = {}
        try:
            row, nf = store_network(change.session, document, w.caller.name, change.now_s)
        except NetworkConflict as conflict:
            if not move_sites:
                raise HTTPException(409, str(conflict)) from None
            moved = dict(conflict.taken)
            try:
                row, nf = store_network(
                    change.session, document, w.caller.name, change.now_s, move_sites=True
                )
            except NetworkError as exc:  # the document itself parsed: a network losing sites does not
                raise HTTPException(409, f"moving the sites would leave a network invalid: {exc}") from None
        change.target = f"network:{name}"
        change.details = {"version_id": row.id, "sites": len(nf.sites), "created": not existed}
        if moved:
            change.details["moved_sites"] = moved
        response.status_code = 200 if existed else 201
        return _summary(row, nf).model_copy(update={"moved_sites": moved})


@router.delete("/networks/{name}", status_code=204, responses={404: {"description": "not in service"}})
def delete_network(name: Name, w: Writer = Depends(writer)) -> Response:
    """Take network `name` out of service: no more envelopes are computed or published for it, and its
    devices fall to their DefaultDERControl. Its versions and history are kept."""
    with w.transaction("network.retire", f"network:{name}") as change:
        row = _in_service(change.session, name)
        change.details = {"version_id": row.id}
        retire_network(change.session, name, change.now_s)
    return Response(status_code=204)


@router.put("/networks/{name}/assets/{asset}/rating", response_model=NetworkOut)
def set_network_rating(name: Name, asset: str, body: RatingIn, w: Writer = Depends(writer)) -> NetworkOut:
    """A new rating (e.g. after an upgrade) of one asset of network `name`, as a new version of it."""
    with w.transaction("network.rating", f"network:{name}/asset:{asset}") as change:
        current = _in_service(change.session, name)
        change.details = {"network": name, **body.model_dump(exclude_none=True)}
        return _rerated(change, current, asset, body, w.caller.name, f"network {name}")


@router.get("/networks/{name}/derates", response_model=Page[DerateOut])
def list_network_derates(
    name: Name, session: Session = Depends(read_session), p: Paging = Depends(paging)
) -> Page:
    """Derates and outages of network `name`'s assets, newest first (cleared and ended ones too)."""
    return _network_derates(session, _in_service(session, name), p)


@router.post("/networks/{name}/derates", status_code=201, response_model=DerateOut)
def add_network_derate(name: Name, body: DerateIn, w: Writer = Depends(writer)) -> DerateOut:
    """Derate an asset of network `name` (factor < 1) or take it out (factor 0)."""
    if body.network is not None and body.network != name:
        raise FieldError(("body", "network"), f"must be the network in the path ({name!r}) or left out")
    with w.transaction("derate.add", f"asset:{body.asset}") as change:
        _in_service(change.session, name)
        row = derates.add_derate(change, body.model_copy(update={"network": name}), w.caller.name)
        return DerateOut.model_validate(row)
