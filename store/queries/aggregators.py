"""Aggregators and client certificates as the operator manages them (unscoped: operator only)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.store.db import bump_publication
from gridshare.store.models import Aggregator, ClientCertificate, ClientKind
from gridshare.store.queries.paging import page_of


def aggregators_page(session: Session, *, start: int, limit: int) -> tuple[int, list[Aggregator]]:
    return page_of(session, select(Aggregator).order_by(Aggregator.id), start=start, limit=limit)


def aggregator_by_name(session: Session, name: str) -> Aggregator | None:
    return session.execute(select(Aggregator).where(Aggregator.name == name)).scalar_one_or_none()


def add_aggregator(session: Session, name: str, now_s: int) -> Aggregator:
    aggregator = Aggregator(name=name, created_s=now_s)
    session.add(aggregator)
    session.flush()
    return aggregator


def certificates_page(
    session: Session, *, aggregator_id: int | None, start: int, limit: int
) -> tuple[int, list[ClientCertificate]]:
    query = select(ClientCertificate).order_by(ClientCertificate.id)
    if aggregator_id is not None:
        query = query.where(ClientCertificate.aggregator_id == aggregator_id)
    return page_of(session, query, start=start, limit=limit)


def set_client_access(
    session: Session, *, lfdi: str, sfdi: int, enabled: bool, now_s: int
) -> ClientCertificate:
    """Allow or refuse one certificate on the device port.

    Refusing an lFDI the store has never seen records it as a revoked device certificate, so a device
    that has not registered yet is refused too. Allowing one clears the revocation (or, for an unknown
    lFDI, registers it as a device, which matters when open registration is off).
    """
    cert = session.execute(
        select(ClientCertificate).where(ClientCertificate.lfdi == lfdi)
    ).scalar_one_or_none()
    if cert is None:
        cert = ClientCertificate(lfdi=lfdi, sfdi=sfdi, kind=ClientKind.device, created_s=now_s)
        session.add(cert)
    cert.revoked_s = None if enabled else (cert.revoked_s or now_s)
    session.flush()
    bump_publication(session)
    return cert
