"""Client certificates and aggregators: who a TLS identity is."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.store.db import bump_publication
from gridshare.store.models import Aggregator, ClientCertificate, ClientKind


def certificate_by_lfdi(session: Session, lfdi: str) -> ClientCertificate | None:
    return session.execute(
        select(ClientCertificate).where(ClientCertificate.lfdi == lfdi)
    ).scalar_one_or_none()


def add_aggregator(session: Session, name: str, now_s: int) -> Aggregator:
    agg = session.execute(select(Aggregator).where(Aggregator.name == name)).scalar_one_or_none()
    if agg is None:
        agg = Aggregator(name=name, created_s=now_s)
        session.add(agg)
        session.flush()
    return agg


def register_certificate(
    session: Session, *, lfdi: str, sfdi: int, kind: ClientKind, aggregator_id: int | None, now_s: int
) -> ClientCertificate:
    """Register (or re-activate) a certificate; an lFDI maps to exactly one client."""
    cert = certificate_by_lfdi(session, lfdi)
    if cert is None:
        cert = ClientCertificate(
            lfdi=lfdi, sfdi=sfdi, kind=kind, aggregator_id=aggregator_id, created_s=now_s
        )
        session.add(cert)
    else:
        cert.kind, cert.aggregator_id, cert.revoked_s = kind, aggregator_id, None
    session.flush()
    bump_publication(session)
    return cert


def revoke_certificate(session: Session, lfdi: str, now_s: int) -> bool:
    """Refuse this certificate from its next request on (the bump invalidates cached scopes)."""
    cert = certificate_by_lfdi(session, lfdi)
    if cert is None or cert.revoked_s is not None:
        return False
    cert.revoked_s = now_s
    bump_publication(session)
    return True
