"""Client access on/off by lFDI, for device and aggregator certificates alike.

Off records the certificate as revoked (a device that never registered gets a revoked device row), so
the device port answers 403 on the next request; on clears the revocation.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from gridshare.certs.identity import normalize_lfdi, sfdi_from_lfdi
from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.deps import Paging, paging, read_session
from gridshare.server.operator.errors import FieldError
from gridshare.server.operator.schemas import AccessIn, AccessOut, CertificateOut, Page
from gridshare.store.models import ClientCertificate
from gridshare.store.queries.aggregators import certificates_page, set_client_access
from gridshare.store.queries.identity import certificate_by_lfdi

router = APIRouter(tags=["client access"])


def _lfdi(lfdi: str) -> str:
    try:
        return normalize_lfdi(lfdi)
    except ValueError as exc:
        raise FieldError(("path", "lfdi"), str(exc)) from None


def _out(cert: ClientCertificate) -> AccessOut:
    return AccessOut(
        lfdi=cert.lfdi,
        sfdi=cert.sfdi,
        kind=cert.kind,
        aggregator_id=cert.aggregator_id,
        enabled=cert.revoked_s is None,
        revoked_s=cert.revoked_s,
    )


@router.get("/certificates", response_model=Page[CertificateOut])
def list_all_certificates(session: Session = Depends(read_session), p: Paging = Depends(paging)) -> Page:
    total, rows = certificates_page(session, aggregator_id=None, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[CertificateOut.model_validate(r) for r in rows])


@router.get("/access/{lfdi}", response_model=AccessOut)
def get_access(lfdi: str, session: Session = Depends(read_session)) -> AccessOut:
    """A certificate the store has no row for is reported as an enabled device (open registration)."""
    lfdi = _lfdi(lfdi)
    cert = certificate_by_lfdi(session, lfdi)
    if cert is None:
        return AccessOut(
            lfdi=lfdi,
            sfdi=sfdi_from_lfdi(lfdi),
            kind="device",
            aggregator_id=None,
            enabled=True,
            revoked_s=None,
        )
    return _out(cert)


@router.put("/access/{lfdi}", response_model=AccessOut)
def set_access(lfdi: str, body: AccessIn, w: Writer = Depends(writer)) -> AccessOut:
    lfdi = _lfdi(lfdi)
    with w.transaction(
        "access.enable" if body.enabled else "access.disable", f"certificate:{lfdi}"
    ) as change:
        cert = set_client_access(
            change.session, lfdi=lfdi, sfdi=sfdi_from_lfdi(lfdi), enabled=body.enabled, now_s=change.now_s
        )
        change.details = {"enabled": body.enabled, "kind": str(cert.kind)}
        return _out(cert)
