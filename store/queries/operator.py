"""Queries and writers for the operator API.

Unlike the device-facing queries these take no `ClientScope`: an operator sees every site. They are
only reachable through the operator listener, behind a bearer token. Writers that change something a
client can see bump the publication counter in the caller's transaction, like every other writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from gridshare.store.db import bump_publication
from gridshare.store.models import (
    Aggregator,
    ClientCertificate,
    ClientKind,
    DefaultDerControl,
    DerControl,
    DerProgram,
    FunctionSetAssignments,
    MirrorMeterReading,
    MirrorUsagePoint,
    Response,
    Site,
    TelemetryReading,
)
from gridshare.store.operator_models import ApiRole, ApiToken, AuditEntry, ServerSetting

T = TypeVar("T")

#: ServerSetting keys: one poll rate per resource, and the telemetry post rate of MirrorUsagePoints.
POLL_RATE_KEY = "poll_rate_s."
MUP_POST_RATE_KEY = "mup_post_rate_s"


def page_of(session: Session, query: Select[T], *, start: int, limit: int) -> tuple[int, list[T]]:
    """The total of an ordered query and one page of it."""
    total = session.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()
    rows = session.execute(query.offset(start).limit(limit)).scalars().all()
    return int(total), list(rows)


# --- tokens and audit ----------------------------------------------------------------------------------


def token_by_digest(session: Session, token_sha256: str) -> ApiToken | None:
    return session.execute(select(ApiToken).where(ApiToken.token_sha256 == token_sha256)).scalar_one_or_none()


def token_by_name(session: Session, name: str) -> ApiToken | None:
    return session.execute(select(ApiToken).where(ApiToken.name == name)).scalar_one_or_none()


def add_token(session: Session, *, name: str, role: ApiRole, token_sha256: str, now_s: int) -> ApiToken:
    token = ApiToken(name=name, role=role, token_sha256=token_sha256, created_s=now_s)
    session.add(token)
    session.flush()
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.execute(select(ApiToken).order_by(ApiToken.id)).scalars().all())


def add_audit(
    session: Session,
    *,
    at_s: int,
    actor: str,
    role: str,
    method: str,
    path: str,
    action: str,
    target: str,
    details: dict[str, Any] | None,
) -> AuditEntry:
    entry = AuditEntry(
        at_s=at_s,
        actor=actor[:64],
        role=role[:16],
        method=method[:8],
        path=path[:255],
        action=action[:64],
        target=target[:128],
        details=details,
    )
    session.add(entry)
    return entry


def audit_page(session: Session, *, start: int, limit: int) -> tuple[int, list[AuditEntry]]:
    """Newest first: an operator reading the log wants the latest changes on the first page."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    return page_of(session, query, start=start, limit=limit)


# --- run-time settings ---------------------------------------------------------------------------------


def settings_with_prefix(session: Session, prefix: str) -> dict[str, Any]:
    rows = session.execute(select(ServerSetting).where(ServerSetting.key.startswith(prefix))).scalars()
    return {row.key[len(prefix) :]: row.value for row in rows}


def get_setting(session: Session, key: str) -> Any:
    row = session.get(ServerSetting, key)
    return None if row is None else row.value


def set_setting(session: Session, key: str, value: Any, now_s: int) -> None:
    """Store (or with None, remove) an override; clients see it on their next request."""
    row = session.get(ServerSetting, key)
    if value is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(ServerSetting(key=key, value=value, changed_s=now_s))
    else:
        row.value, row.changed_s = value, now_s
    session.flush()
    bump_publication(session)


def poll_rate_overrides(session: Session) -> dict[str, int]:
    """Poll rates an operator set at run time, by resource (dcap, edev, fsa, derp, der, mup)."""
    return {k: int(v) for k, v in settings_with_prefix(session, POLL_RATE_KEY).items()}


def set_mup_post_rate(session: Session, post_rate_s: int | None, now_s: int) -> int:
    """Store the MirrorUsagePoint post rate and apply it to every existing MirrorUsagePoint.

    Each MUP carries its own `post_rate_s`, which the wire layer prefers, so existing MUPs advertise the
    new rate on their next read. Returns how many MUPs were updated.
    """
    set_setting(session, MUP_POST_RATE_KEY, post_rate_s, now_s)
    mups = session.execute(select(MirrorUsagePoint)).scalars().all()
    for mup in mups:
        mup.post_rate_s = post_rate_s
        mup.changed_s = now_s
    bump_publication(session)
    return len(mups)


# --- aggregators and certificates ----------------------------------------------------------------------


def aggregators_page(session: Session, *, start: int, limit: int) -> tuple[int, list[Aggregator]]:
    return page_of(session, select(Aggregator).order_by(Aggregator.id), start=start, limit=limit)


def aggregator_by_name(session: Session, name: str) -> Aggregator | None:
    return session.execute(select(Aggregator).where(Aggregator.name == name)).scalar_one_or_none()


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


# --- sites ----------------------------------------------------------------------------------------------


def sites_page(
    session: Session, *, aggregator_id: int | None, start: int, limit: int
) -> tuple[int, list[Site]]:
    query = select(Site).order_by(Site.id)
    if aggregator_id is not None:
        query = query.where(Site.aggregator_id == aggregator_id)
    return page_of(session, query, start=start, limit=limit)


def site_for(session: Session, *, lfdi: str, aggregator_id: int | None) -> Site | None:
    """The site an lFDI names for one owner: a device's own (no aggregator) or an aggregator's."""
    owner = Site.aggregator_id.is_(None) if aggregator_id is None else Site.aggregator_id == aggregator_id
    return session.execute(select(Site).where(Site.lfdi == lfdi, owner)).scalar_one_or_none()


# --- function sets and programs ------------------------------------------------------------------------


def fsas_page(session: Session, *, start: int, limit: int) -> tuple[int, list[FunctionSetAssignments]]:
    query = select(FunctionSetAssignments).order_by(FunctionSetAssignments.id)
    return page_of(session, query, start=start, limit=limit)


def programs_page(
    session: Session, *, fsa_id: int | None, start: int, limit: int
) -> tuple[int, list[DerProgram]]:
    query = select(DerProgram).order_by(DerProgram.primacy, DerProgram.id)
    if fsa_id is not None:
        query = query.where(DerProgram.fsa_id == fsa_id)
    return page_of(session, query, start=start, limit=limit)


def delete_program(session: Session, program: DerProgram) -> None:
    """Delete a program; the database cascades its controls, defaults and curves with it."""
    session.execute(delete(DerProgram).where(DerProgram.id == program.id))
    bump_publication(session)


def delete_fsa(session: Session, fsa: FunctionSetAssignments) -> None:
    session.execute(delete(FunctionSetAssignments).where(FunctionSetAssignments.id == fsa.id))
    bump_publication(session)


def default_controls(session: Session, program_id: int) -> list[DefaultDerControl]:
    """The program-wide default first, then per-site ones by site."""
    rows = session.execute(
        select(DefaultDerControl)
        .where(DefaultDerControl.program_id == program_id)
        .order_by(DefaultDerControl.site_id.is_not(None), DefaultDerControl.site_id)
    )
    return list(rows.scalars().all())


def default_control_for(session: Session, program_id: int, site_id: int | None) -> DefaultDerControl | None:
    owner = DefaultDerControl.site_id.is_(None) if site_id is None else DefaultDerControl.site_id == site_id
    return session.execute(
        select(DefaultDerControl).where(DefaultDerControl.program_id == program_id, owner)
    ).scalar_one_or_none()


# --- controls -------------------------------------------------------------------------------------------


def controls_page(
    session: Session, *, site_id: int, program_id: int, start: int, limit: int
) -> tuple[int, list[DerControl]]:
    """Every control of a site in a program, ended ones included, newest start first."""
    query = (
        select(DerControl)
        .where(DerControl.site_id == site_id, DerControl.program_id == program_id)
        .order_by(DerControl.start_s.desc(), DerControl.id.desc())
    )
    return page_of(session, query, start=start, limit=limit)


def control_in(session: Session, *, site_id: int, program_id: int, control_id: int) -> DerControl | None:
    return session.execute(
        select(DerControl).where(
            DerControl.id == control_id, DerControl.site_id == site_id, DerControl.program_id == program_id
        )
    ).scalar_one_or_none()


def cancellable_controls(
    session: Session, *, program_id: int, site_id: int | None, now_s: int
) -> Sequence[DerControl]:
    """Controls of a program (optionally one site) that have not ended and are not cancelled yet."""
    query = select(DerControl).where(
        DerControl.program_id == program_id,
        DerControl.cancelled_s.is_(None),
        DerControl.start_s + DerControl.duration_s > now_s,
    )
    if site_id is not None:
        query = query.where(DerControl.site_id == site_id)
    return session.execute(query.order_by(DerControl.id)).scalars().all()


# --- read-only views ------------------------------------------------------------------------------------


def telemetry_page(
    session: Session, *, site_id: int, since_s: int, start: int, limit: int
) -> tuple[int, list[tuple[TelemetryReading, MirrorMeterReading, MirrorUsagePoint]]]:
    """Readings of one site, newest first, with the meter reading and usage point they were posted to."""
    query = (
        select(TelemetryReading, MirrorMeterReading, MirrorUsagePoint)
        .join(MirrorMeterReading, MirrorMeterReading.id == TelemetryReading.mmr_id)
        .join(MirrorUsagePoint, MirrorUsagePoint.id == MirrorMeterReading.mup_id)
        .where(MirrorUsagePoint.site_id == site_id, TelemetryReading.time_s >= since_s)
    )
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(
        query.order_by(TelemetryReading.time_s.desc(), TelemetryReading.id.desc()).offset(start).limit(limit)
    ).all()
    return int(total), [(r, m, u) for r, m, u in rows]


def responses_page(session: Session, *, site_id: int, start: int, limit: int) -> tuple[int, list[Response]]:
    query = (
        select(Response)
        .where(Response.site_id == site_id)
        .order_by(Response.created_s.desc(), Response.id.desc())
    )
    return page_of(session, query, start=start, limit=limit)
