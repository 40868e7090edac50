"""Sites (EndDevices): create, list, read, change NMI / enabled / post rate; their connection agreements.

Writes go through services/site_registry.py.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlalchemy.orm import Session

from gridshare.certs.identity import sfdi_from_lfdi
from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.schemas import AgreementIn, AgreementOut, Page, SiteIn, SiteOut, SitePatch
from gridshare.server.operator.services import site_registry
from gridshare.store.models import Aggregator, ConnectionAgreement, Site
from gridshare.store.queries.nmis import holder_of, operator_bind_problem
from gridshare.store.queries.sites import site_for, sites_page

router = APIRouter(tags=["sites"])


def _check_free(session: Session, site: Site, nmi: str) -> None:
    """An NMI held by another EndDevice is moved on purpose (PUT /nmis/{nmi}/site), never by a PATCH."""
    holder = holder_of(session, nmi, excluding=site.id)
    if holder is not None:
        raise HTTPException(
            409,
            f"NMI {nmi} is bound to site {holder.id}; move it with PUT /nmis/{nmi}/site or release it first",
        )
    reason = operator_bind_problem(session, site, nmi)
    if reason is not None:
        raise HTTPException(409, reason)


def _agreement_out(row: ConnectionAgreement) -> AgreementOut:
    return AgreementOut.model_validate(row)


@router.get("/sites", response_model=Page[SiteOut])
def list_sites(
    session: Session = Depends(read_session),
    p: Paging = Depends(paging),
    aggregator_id: int | None = Query(None, ge=0, le=2**31 - 1),
) -> Page:
    total, rows = sites_page(session, aggregator_id=aggregator_id, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[SiteOut.model_validate(r) for r in rows])


@router.post("/sites", status_code=201, response_model=SiteOut)
def add_site(body: SiteIn, w: Writer = Depends(writer)) -> SiteOut:
    """An EndDevice registered by the operator: a device's own, or one an aggregator manages."""
    with w.transaction("site.create") as change:
        session = change.session
        if body.aggregator_id is not None:
            found(session.get(Aggregator, body.aggregator_id), "aggregator")
        if site_for(session, lfdi=body.lfdi, aggregator_id=body.aggregator_id) is not None:
            raise HTTPException(409, f"an EndDevice with lFDI {body.lfdi} exists for this owner")
        site = site_registry.add_site(
            session,
            lfdi=body.lfdi,
            aggregator_id=body.aggregator_id,
            sfdi=body.sfdi if body.sfdi is not None else sfdi_from_lfdi(body.lfdi),
            device_category=body.device_category,
            post_rate_s=body.post_rate_s,
            pin=body.registration_pin
            if body.registration_pin is not None
            else w.ctx.settings.default_registration_pin,
            now_s=change.now_s,
        )
        if body.nmi is not None:
            _check_free(session, site, body.nmi)
        site_registry.bind_nmi(session, site, body.nmi)
        change.target = f"site:{site.id}"
        change.details = body.model_dump(exclude_none=True)
        return SiteOut.model_validate(site)


@router.get("/sites/{site_id}", response_model=SiteOut)
def get_site(site_id: Id, session: Session = Depends(read_session)) -> SiteOut:
    return SiteOut.model_validate(found(session.get(Site, site_id), "site"))


@router.patch("/sites/{site_id}", response_model=SiteOut)
def change_site(site_id: Id, body: SitePatch, w: Writer = Depends(writer)) -> SiteOut:
    """Set the NMI, enable or disable the EndDevice, or change its post rate; absent fields stay."""
    changes = body.model_dump(include=body.model_fields_set)
    with w.transaction("site.update", f"site:{site_id}") as change:
        site = found(change.session.get(Site, site_id), "site")
        if changes.get("nmi") is not None and changes["nmi"] != site.nmi:
            _check_free(change.session, site, changes["nmi"])
        site_registry.change_site(site, changes, change.now_s)
        change.details = changes
        return SiteOut.model_validate(site)


@router.get("/sites/{site_id}/agreement", response_model=AgreementOut)
def get_agreement(site_id: Id, session: Session = Depends(read_session)) -> AgreementOut:
    site = found(session.get(Site, site_id), "site")
    return _agreement_out(found(site.agreement, "connection agreement"))


@router.put("/sites/{site_id}/agreement", response_model=AgreementOut)
def set_agreement(site_id: Id, body: AgreementIn, w: Writer = Depends(writer)) -> AgreementOut:
    """Replace the site's agreement as a whole (fields not sent are cleared)."""
    with w.transaction("agreement.set", f"site:{site_id}") as change:
        site = found(change.session.get(Site, site_id), "site")
        row = site_registry.set_agreement(change.session, site, body.model_dump())
        change.details = body.model_dump(exclude_none=True, mode="json")
        return _agreement_out(row)


@router.delete("/sites/{site_id}/agreement", status_code=204)
def delete_agreement(site_id: Id, w: Writer = Depends(writer)) -> Response:
    with w.transaction("agreement.delete", f"site:{site_id}") as change:
        site = found(change.session.get(Site, site_id), "site")
        site_registry.delete_agreement(change.session, found(site.agreement, "connection agreement"))
    return Response(status_code=204)
