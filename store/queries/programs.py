"""Function sets, programs, controls, defaults and curves. Per-site rows take a `Site` that the caller
obtained through its scope, so no control can be read for a site the client may not see."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from gridshare.store.db import bump_publication
from gridshare.store.models import (
    DefaultDerControl,
    DerControl,
    DerCurve,
    DerProgram,
    FunctionSetAssignments,
    Site,
)
from gridshare.store.queries.envelopes import EnvelopeControl, envelope_controls
from gridshare.store.queries.paging import page_of


def list_fsas(session: Session, *, start: int, limit: int) -> tuple[int, list[FunctionSetAssignments]]:
    total = session.execute(select(func.count(FunctionSetAssignments.id))).scalar_one()
    page = (
        session.execute(
            select(FunctionSetAssignments).order_by(FunctionSetAssignments.id).offset(start).limit(limit)
        )
        .scalars()
        .all()
    )
    return int(total), list(page)


def get_fsa(session: Session, fsa_id: int) -> FunctionSetAssignments | None:
    return session.get(FunctionSetAssignments, fsa_id)


def count_programs(session: Session, fsa_id: int) -> int:
    return int(
        session.execute(select(func.count(DerProgram.id)).where(DerProgram.fsa_id == fsa_id)).scalar_one()
    )


def list_programs(session: Session, fsa_id: int, *, start: int, limit: int) -> tuple[int, list[DerProgram]]:
    """Programs by primacy ascending (lower primacy value wins, IEEE 2030.5 §10.10)."""
    total = count_programs(session, fsa_id)
    page = (
        session.execute(
            select(DerProgram)
            .where(DerProgram.fsa_id == fsa_id)
            .order_by(DerProgram.primacy, DerProgram.id)
            .offset(start)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    return total, list(page)


def get_program(session: Session, program_id: int) -> DerProgram | None:
    return session.get(DerProgram, program_id)


def first_program_id(session: Session) -> int | None:
    return session.execute(
        select(DerProgram.id).order_by(DerProgram.primacy, DerProgram.id).limit(1)
    ).scalar_one_or_none()


def live_controls(session: Session, site: Site, program_id: int, now_s: float) -> list[DerControl]:
    """Every control of this site and program that has not ended yet (status is derived later)."""
    return list(
        session.execute(
            select(DerControl).where(
                DerControl.site_id == site.id,
                DerControl.program_id == program_id,
                DerControl.start_s + DerControl.duration_s > now_s,
            )
        )
        .scalars()
        .all()
    )


def program_controls(
    session: Session, site: Site, program_id: int, now_s: float, pen: int
) -> list[DerControl | EnvelopeControl]:
    """Operator controls and published envelope blocks of one site in one program, not yet ended."""
    return [
        *live_controls(session, site, program_id, now_s),
        *envelope_controls(session, site, program_id, now_s, pen),
    ]


def default_control(session: Session, site: Site, program_id: int) -> DefaultDerControl | None:
    """The site's own default if one is set, else the program-wide one."""
    rows = (
        session.execute(
            select(DefaultDerControl).where(
                DefaultDerControl.program_id == program_id,
                (DefaultDerControl.site_id == site.id) | DefaultDerControl.site_id.is_(None),
            )
        )
        .scalars()
        .all()
    )
    return min(rows, key=lambda d: d.site_id is None, default=None)


def count_curves(session: Session, program_id: int) -> int:
    return int(
        session.execute(select(func.count(DerCurve.id)).where(DerCurve.program_id == program_id)).scalar_one()
    )


def list_curves(session: Session, program_id: int, *, start: int, limit: int) -> tuple[int, list[DerCurve]]:
    total = count_curves(session, program_id)
    page = (
        session.execute(
            select(DerCurve)
            .where(DerCurve.program_id == program_id)
            .order_by(DerCurve.id)
            .offset(start)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    return total, list(page)


def get_curve(session: Session, program_id: int, curve_id: int) -> DerCurve | None:
    return session.execute(
        select(DerCurve).where(DerCurve.id == curve_id, DerCurve.program_id == program_id)
    ).scalar_one_or_none()


# --- operator API (unscoped: an operator sees every site) ---


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
