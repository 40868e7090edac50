"""EndDeviceList/EndDevice (registration), Registration and the CSIP-AUS ConnectionPoint."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from lxml import etree
from sqlalchemy.exc import IntegrityError

from gridshare.certs.identity import LFDI_HEX_DIGITS, is_valid_sfdi, sfdi_from_lfdi
from gridshare.server.shared.paging import Page, page
from gridshare.server.shared.request_unit import (
    Id,
    Unit,
    created,
    read_unit,
    read_xml,
    store_work,
    write_unit,
    xml,
)
from gridshare.server.wire import decode, encode, hrefs
from gridshare.server.wire.errors import InvalidValues
from gridshare.server.wire.xmlio import CSIP_NS
from gridshare.store.change_feed import SITES, bump_changes, owner_key, site_key
from gridshare.store.models import Site
from gridshare.store.queries.nmis import canonical_nmi, client_claim_problem
from gridshare.store.queries.sites import create_site, list_sites, site_by_lfdi

router = APIRouter()

#: NMIs are 10 characters plus an optional checksum digit (AEMO); anything else is refused (S-OPT-02).
_NMI = re.compile(r"^[A-Za-z0-9]{10}[0-9]?$")


def nmi_checksum(nmi10: str) -> int:
    """AEMO's NMI checksum digit: Luhn-style doubling over the character codes, from the right."""
    total, double = 0, True
    for ch in reversed(nmi10.upper()):
        value = ord(ch) * 2 if double else ord(ch)
        double = not double
        total += sum(int(d) for d in str(value))
    return (10 - total % 10) % 10


def valid_nmi(nmi: str) -> bool:
    """An NMI: 10 letters or digits, or those and their checksum digit (as CSIP-AUS clients send it)."""
    if not _NMI.match(nmi):
        return False
    return len(nmi) == 10 or int(nmi[10]) == nmi_checksum(nmi[:10])


def _cacheable(u: Unit, *, virtual: bool) -> None:
    """Registration state changes only with publishing writes; /edev/0 is dated now (this second)."""
    if virtual:
        u.cacheable(valid_from_s=u.now_s(), valid_until_s=u.now_s() + 1)
    else:
        u.cacheable()


def _virtual_aggregator_device(u: Unit) -> Site:
    """The aggregator's own EndDevice at /edev/0, built from its certificate (never stored)."""
    return Site(
        id=0,
        lfdi=u.scope.lfdi,
        sfdi=u.scope.sfdi,
        device_category=0,
        enabled=True,
        changed_s=u.now_s(),
        created_s=u.now_s(),
        registration_pin=0,
    )


@router.api_route(hrefs.EDEV_LIST_T.path, methods=["GET", "HEAD"])
def end_device_list(request: Request, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        virtual = 1 if u.scope.is_aggregator else 0
        _cacheable(u, virtual=bool(virtual))
        start = max(p.start - virtual, 0)
        limit = p.limit - (1 if virtual and p.start == 0 and p.limit > 0 else 0)
        total, sites = list_sites(
            u.session, u.scope, start=start, limit=max(limit, 0), changed_after_s=p.after_s
        )
        items: list[etree._Element] = []
        if virtual and p.start == 0 and p.limit > 0:
            items.append(encode.end_device(None, _virtual_aggregator_device(u), virtual=True))
        items.extend(encode.end_device(None, site) for site in sites)
        el = encode.list_root(
            "EndDeviceList",
            hrefs.EDEV_LIST,
            total + virtual,
            len(items),
            u.poll_rate("edev"),
            subscribable=encode.SUBSCRIBABLE,
        )
        return xml(encode.append_all(el, items))


@router.api_route(hrefs.EDEV_T.path, methods=["GET", "HEAD"])
def end_device(request: Request, site_id: Id) -> Response:
    with read_unit(request) as u:
        virtual = site_id == hrefs.AGGREGATOR_EDEV_ID and u.scope.is_aggregator
        _cacheable(u, virtual=virtual)
        if virtual:
            return xml(encode.end_device(None, _virtual_aggregator_device(u), virtual=True))
        return xml(encode.end_device(None, u.site(site_id)))


@router.post(hrefs.EDEV_LIST_T.path)
async def register_end_device(request: Request) -> Response:
    """Registration by a device (its own certificate) or by an aggregator (for a device it manages)."""
    body = decode.end_device(await read_xml(request, "EndDevice"))
    if not is_valid_sfdi(body.sfdi):
        raise HTTPException(400, "sFDI check digit is wrong")
    return await store_work(request, _register, body)


def _register(request: Request, body: decode.EndDeviceIn) -> Response:
    # A returning device (the common case after an outage) is answered from a read: no write
    # transaction, no publication. Only a registration that may create a site takes the write path,
    # which checks again (another request may have registered it meanwhile).
    with read_unit(request) as u:
        _registration_lookup(u, body)
    with write_unit(request, publishes=False) as u:
        lfdi = _registration_lookup(u, body)
        site = create_site(
            u.session,
            u.scope,
            lfdi=lfdi,
            sfdi=body.sfdi,
            device_category=body.device_category,
            post_rate_s=body.post_rate_s,
            pin=u.ctx.settings.default_registration_pin,
            now_s=u.now_s(),
        )
        _site_changed(u, site)
        return created(hrefs.edev(site.id))


def _site_changed(u: Unit, site: Site) -> None:
    """What a device's registration or NMI binding changes, without publishing: the bodies of the one
    client that sees the site (its owner key), the site's own key, and `SITES` for the notifier.
    Every other client's cached answers and remembered checks stay valid (docs/change-feed.md)."""
    bump_changes(u.session, [owner_key(site.lfdi, site.aggregator_id), site_key(site.id), SITES])


def _registration_lookup(u: Unit, body: decode.EndDeviceIn) -> str:
    """The lFDI a registration names, checked against the caller; 409 + Location if it is registered."""
    scope = u.scope
    lfdi = body.lfdi
    if not scope.is_aggregator:
        if lfdi is not None and lfdi != scope.lfdi:
            raise HTTPException(400, "lFDI does not match the client certificate")
        if body.sfdi != scope.sfdi:
            raise HTTPException(400, "sFDI does not match the client certificate")
        lfdi = scope.lfdi
    elif lfdi is None:
        raise HTTPException(400, "an aggregator must give the lFDI of the device it registers")
    elif len(lfdi) != LFDI_HEX_DIGITS:
        raise HTTPException(400, f"lFDI must be {LFDI_HEX_DIGITS} hex digits (160 bits), got {len(lfdi)}")
    elif lfdi == scope.lfdi:
        raise HTTPException(400, f"the aggregator's own EndDevice is {hrefs.edev(hrefs.AGGREGATOR_EDEV_ID)}")
    if sfdi_from_lfdi(lfdi) != body.sfdi:
        raise HTTPException(400, "sFDI is not derived from the lFDI")
    site = site_by_lfdi(u.session, scope, lfdi)
    if site is not None:
        # A second registration of one lFDI is refused (CSIP-AUS S-ALL-51); Location names the
        # EndDevice that exists, so the client can use it. The answer changes only with this client's
        # sites (its owner key) or a publication: the fast path may give it again to the same body
        # from the same client.
        u.cacheable()
        raise HTTPException(
            409, "an EndDevice with this lFDI is registered", headers={"Location": hrefs.edev(site.id)}
        )
    return lfdi


@router.api_route(hrefs.REGISTRATION_T.path, methods=["GET", "HEAD"])
def registration(request: Request, site_id: Id) -> Response:
    with read_unit(request) as u:
        u.cacheable()
        return xml(encode.registration(u.site(site_id), u.poll_rate("edev")))


@router.api_route(hrefs.CONNECTION_POINT_T.path, methods=["GET", "HEAD"])
def connection_point(request: Request, site_id: Id) -> Response:
    with read_unit(request) as u:
        u.cacheable()
        return xml(encode.connection_point(u.site(site_id)))


@router.api_route(hrefs.CONNECTION_POINT_T.path, methods=["PUT", "POST"])
async def set_connection_point(request: Request, site_id: Id) -> Response:
    """Bind the EndDevice to its NMI, which is how it gets that network site's envelope.

    One NMI belongs to one EndDevice: naming one that another holds, or one the operator assigned to
    another aggregator, is a 409 (store.queries.nmis has the rules; the operator moves NMIs).
    """
    nmi = decode.connection_point(await read_xml(request, f"{{{CSIP_NS}}}ConnectionPoint"))
    if not valid_nmi(nmi):
        raise InvalidValues(
            400, "connectionPointId must be an NMI: 10 letters or digits, optionally its checksum digit"
        )
    await store_work(request, _bind_nmi, site_id, nmi)
    if request.method == "POST":
        return created(hrefs.connection_point(site_id))
    # Location as after a POST: clients (the CSIP-AUS conformance client) re-read the resource from it.
    return Response(status_code=204, headers={"Location": hrefs.connection_point(site_id)})


def _bind_nmi(request: Request, site_id: int, nmi: str) -> None:
    with read_unit(request) as u:
        site = u.site(site_id)
        # Its own NMI again (a returning device re-sends it): nothing changes, so nothing is written or
        # published and every cached body and client scope stays valid. The claim rules still apply.
        unchanged = site.nmi is not None and canonical_nmi(site.nmi) == canonical_nmi(nmi)
        if unchanged:
            reason = client_claim_problem(u.session, u.scope, site, nmi, u.ctx.settings.nmi_claims)
            if reason is not None:
                raise InvalidValues(409, reason)
            # A binding changes only with this client's own writes (its owner key) and the claim rules
            # only with the operator's, which publish: the same body from the same client gets the
            # same answer until then (the fast path gives it again).
            u.cacheable()
    if not unchanged:
        with write_unit(request, publishes=False) as u:
            site = u.site(site_id)
            reason = client_claim_problem(u.session, u.scope, site, nmi, u.ctx.settings.nmi_claims)
            if reason is not None:
                raise InvalidValues(409, reason)
            # Its own NMI in another spelling (case, checksum digit) keeps the spelling it is bound by.
            if site.nmi is None or canonical_nmi(site.nmi) != canonical_nmi(nmi):
                site.nmi = nmi
                site.changed_s = u.now_s()
                try:
                    u.session.flush()
                except IntegrityError:
                    # Another EndDevice claimed it in a transaction that committed first (the unique index).
                    raise InvalidValues(409, f"NMI {nmi} was just bound to another EndDevice") from None
                _site_changed(u, site)
