"""Aggregators and their client certificates: register, rotate, revoke.

A certificate is identified by the lFDI computed from the PEM the operator sends (never a typed one),
and a revocation bumps the publication counter, which drops every cached scope: the device port
refuses the certificate on its very next request.
"""

from __future__ import annotations

from cryptography import x509
from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy.orm import Session

from gridshare.certs.identity import DeviceIdentity, load_certificates, normalize_lfdi
from gridshare.server.operator.audit import Change, Writer, writer
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.errors import FieldError
from gridshare.server.operator.schemas import (
    AggregatorIn,
    AggregatorOut,
    CertificateIn,
    CertificateOut,
    Page,
    RotateOut,
)
from gridshare.store.models import Aggregator, ClientCertificate, ClientKind
from gridshare.store.queries.aggregators import (
    add_aggregator,
    aggregator_by_name,
    aggregators_page,
    certificates_page,
)
from gridshare.store.queries.identity import certificate_by_lfdi, register_certificate, revoke_certificate

router = APIRouter(tags=["aggregators"])


def _identity(pem: str) -> DeviceIdentity:
    """lFDI/sFDI of the leaf (first) certificate of a PEM text; anything else is a 422 on `pem`."""
    reason = "not a PEM certificate (-----BEGIN CERTIFICATE-----)"
    # load_certificates reads a path when given other text: only ever hand it PEM.
    if not pem.lstrip().startswith("-----BEGIN"):
        raise FieldError(("body", "pem"), reason)
    try:
        leaf: x509.Certificate = load_certificates(pem)[0]
    except ValueError:
        raise FieldError(("body", "pem"), reason) from None
    return DeviceIdentity.from_certificate(leaf)


def _path_lfdi(lfdi: str) -> str:
    try:
        return normalize_lfdi(lfdi)
    except ValueError as exc:
        raise FieldError(("path", "lfdi"), str(exc)) from None


def _register(change: Change, aggregator: Aggregator, pem: str) -> ClientCertificate:
    ident = _identity(pem)
    existing = certificate_by_lfdi(change.session, ident.lfdi)
    if existing is not None:
        raise HTTPException(409, f"certificate lFDI {ident.lfdi} is already registered")
    return register_certificate(
        change.session,
        lfdi=ident.lfdi,
        sfdi=ident.sfdi,
        kind=ClientKind.aggregator,
        aggregator_id=aggregator.id,
        now_s=change.now_s,
    )


def _own_certificate(session: Session, aggregator: Aggregator, lfdi: str) -> ClientCertificate:
    cert = certificate_by_lfdi(session, _path_lfdi(lfdi))
    if cert is None or cert.aggregator_id != aggregator.id:
        raise HTTPException(404, "no such certificate for this aggregator")
    return cert


@router.get("/aggregators", response_model=Page[AggregatorOut])
def list_aggregators(session: Session = Depends(read_session), p: Paging = Depends(paging)) -> Page:
    total, rows = aggregators_page(session, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[AggregatorOut.model_validate(r) for r in rows])


@router.post("/aggregators", status_code=201, response_model=AggregatorOut)
def create_aggregator(body: AggregatorIn, w: Writer = Depends(writer)) -> AggregatorOut:
    with w.transaction("aggregator.create") as change:
        if aggregator_by_name(change.session, body.name) is not None:
            raise HTTPException(409, f"an aggregator named {body.name!r} exists")
        agg = add_aggregator(change.session, body.name, change.now_s)
        change.target, change.details = f"aggregator:{agg.id}", {"name": body.name}
        return AggregatorOut.model_validate(agg)


@router.get("/aggregators/{aggregator_id}", response_model=AggregatorOut)
def get_aggregator(aggregator_id: Id, session: Session = Depends(read_session)) -> AggregatorOut:
    return AggregatorOut.model_validate(found(session.get(Aggregator, aggregator_id), "aggregator"))


@router.get("/aggregators/{aggregator_id}/certificates", response_model=Page[CertificateOut])
def list_certificates(
    aggregator_id: Id, session: Session = Depends(read_session), p: Paging = Depends(paging)
) -> Page:
    found(session.get(Aggregator, aggregator_id), "aggregator")
    total, rows = certificates_page(session, aggregator_id=aggregator_id, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[CertificateOut.model_validate(r) for r in rows])


@router.post("/aggregators/{aggregator_id}/certificates", status_code=201, response_model=CertificateOut)
def register_aggregator_certificate(
    aggregator_id: Id, body: CertificateIn, w: Writer = Depends(writer)
) -> CertificateOut:
    with w.transaction("certificate.register") as change:
        agg = found(change.session.get(Aggregator, aggregator_id), "aggregator")
        cert = _register(change, agg, body.pem)
        change.target, change.details = f"certificate:{cert.lfdi}", {"aggregator_id": agg.id}
        return CertificateOut.model_validate(cert)


@router.post("/aggregators/{aggregator_id}/certificates/{lfdi}/rotate", response_model=RotateOut)
def rotate_certificate(
    aggregator_id: Id, lfdi: str, body: CertificateIn, w: Writer = Depends(writer)
) -> RotateOut:
    """Register the new certificate and revoke the old one in one transaction: never both, never neither."""
    with w.transaction("certificate.rotate") as change:
        agg = found(change.session.get(Aggregator, aggregator_id), "aggregator")
        old = _own_certificate(change.session, agg, lfdi)
        if old.revoked_s is not None:
            raise HTTPException(409, f"certificate lFDI {old.lfdi} is already revoked")
        new = _register(change, agg, body.pem)
        revoke_certificate(change.session, old.lfdi, change.now_s)
        change.target = f"certificate:{old.lfdi}"
        change.details = {"aggregator_id": agg.id, "revoked": old.lfdi, "registered": new.lfdi}
        return RotateOut(
            registered=CertificateOut.model_validate(new), revoked=CertificateOut.model_validate(old)
        )


@router.post("/aggregators/{aggregator_id}/certificates/{lfdi}/revoke", response_model=CertificateOut)
def revoke_aggregator_certificate(
    aggregator_id: Id, lfdi: str, w: Writer = Depends(writer)
) -> CertificateOut:
    with w.transaction("certificate.revoke") as change:
        agg = found(change.session.get(Aggregator, aggregator_id), "aggregator")
        cert = _own_certificate(change.session, agg, lfdi)
        if not revoke_certificate(change.session, cert.lfdi, change.now_s):
            raise HTTPException(409, f"certificate lFDI {cert.lfdi} is already revoked")
        change.target, change.details = f"certificate:{cert.lfdi}", {"aggregator_id": agg.id}
        return CertificateOut.model_validate(cert)
