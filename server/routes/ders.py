"""DERList/DER and the four documents a client keeps current: capability, settings, status, availability."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from gridshare.server.shared.paging import Page, page
from gridshare.server.shared.request_unit import Id, Unit, read_unit, read_xml, store_work, write_unit, xml
from gridshare.server.wire import decode, encode, hrefs
from gridshare.store.change_feed import site_key
from gridshare.store.queries.programs import first_program_id
from gridshare.store.queries.sites import get_der, list_ders

router = APIRouter()

DOCS = encode.DER_DOCS  # path segment -> root element name


def _cacheable(u: Unit, site_id: int) -> None:
    """DER rows change with the client's PUTs, which bump `site:<id>` (migration 0010), not `all`."""
    u.depends_on(site_key(site_id))  # before anything is read
    u.cacheable()


def _doc_name(doc: str) -> str:
    if doc not in DOCS:
        raise HTTPException(404, "no such DER resource")
    return DOCS[doc]


@router.api_route(hrefs.DER_LIST_T.path, methods=["GET", "HEAD"])
def der_list(request: Request, site_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        _cacheable(u, site_id)
        site = u.site(site_id)
        total, ders = list_ders(u.session, site, start=p.start, limit=p.limit)
        program_id = first_program_id(u.session)
        el = encode.list_root("DERList", hrefs.der_list(site_id), total, len(ders), u.poll_rate("der"))
        for d in ders:
            encode.der(el, site_id, d, program_id)
        return xml(el)


@router.api_route(hrefs.DER_T.path, methods=["GET", "HEAD"])
def der(request: Request, site_id: Id, der_index: Id) -> Response:
    with read_unit(request) as u:
        _cacheable(u, site_id)
        d = get_der(u.session, u.site(site_id), der_index)
        if d is None:
            raise HTTPException(404, "no such DER")
        return xml(encode.der(None, site_id, d, first_program_id(u.session)))


@router.api_route(hrefs.DER_DOC_T.path, methods=["GET", "HEAD"])
def der_document(request: Request, site_id: Id, der_index: Id, doc: str) -> Response:
    name = _doc_name(doc)
    with read_unit(request) as u:
        _cacheable(u, site_id)
        d = get_der(u.session, u.site(site_id), der_index)
        stored = None if d is None else getattr(d, f"{_column(doc)}_xml")
        if stored is None:
            raise HTTPException(404, f"no {name} has been sent for this DER")
        return xml(encode.stored_document(stored, hrefs.der_doc(site_id, der_index, doc)))


@router.put(hrefs.DER_DOC_T.path)
async def put_der_document(request: Request, site_id: Id, der_index: Id, doc: str) -> Response:
    name = _doc_name(doc)
    body = decode.der_document(await read_xml(request, name))
    # A slow store holds up this request only, not every device's connection (store_work).
    await store_work(request, _store_der_document, site_id, der_index, doc, body)
    return Response(status_code=204)


def _store_der_document(
    request: Request, site_id: int, der_index: int, doc: str, body: decode.DerDocumentIn
) -> None:
    with write_unit(request, publishes=False) as u:
        d = get_der(u.session, u.site(site_id), der_index)
        if d is None:
            raise HTTPException(404, "no such DER")
        column = _column(doc)
        setattr(d, f"{column}_xml", body.xml_text)
        setattr(d, f"{column}_s", u.now_s())
        if column == "capability":
            d.rtg_max_w, d.doe_modes_supported = body.rtg_max_w, body.doe_modes_supported
        elif column == "settings":
            d.set_max_w, d.doe_modes_enabled = body.set_max_w, body.doe_modes_enabled


def _column(doc: str) -> str:
    return {"dercap": "capability", "derg": "settings", "ders": "status", "dera": "availability"}[doc]
