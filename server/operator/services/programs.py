"""Writing FunctionSetAssignments and DERPrograms for the operator API.

A new program gets its program-wide DefaultDERControl from the seeded defaults at once: CSIP-AUS expects
every DERProgram to link one, and a device must always have a safe fallback.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from gridshare.core.mrid import new_mrid
from gridshare.core.settings import Settings
from gridshare.store.models import DerProgram, FunctionSetAssignments
from gridshare.store.queries.controls import ControlValues, set_default_control


def create_fsa(session: Session, settings: Settings, description: str, now_s: int) -> FunctionSetAssignments:
    fsa = FunctionSetAssignments(mrid=new_mrid(settings.pen), description=description, changed_s=now_s)
    session.add(fsa)
    session.flush()
    return fsa


def describe_fsa(fsa: FunctionSetAssignments, description: str, now_s: int) -> None:
    fsa.description, fsa.changed_s = description, now_s


def create_program(
    session: Session, settings: Settings, *, fsa_id: int, description: str, primacy: int, now_s: int
) -> DerProgram:
    program = DerProgram(
        fsa_id=fsa_id,
        mrid=new_mrid(settings.pen),
        description=description,
        primacy=primacy,
        changed_s=now_s,
    )
    session.add(program)
    session.flush()
    set_default_control(
        session,
        program=program,
        site=None,
        mrid=new_mrid(settings.pen),
        values=ControlValues(
            export_limit_w=settings.default_export_limit_w, import_limit_w=settings.default_import_limit_w
        ),
        now_s=now_s,
        set_grad_w_hundredths=settings.default_set_grad_w_hundredths,
    )
    return program


def change_program(program: DerProgram, changes: dict[str, Any], now_s: int) -> None:
    """Apply checked changes (description, primacy, FSA); devices see a new version."""
    for name, value in changes.items():
        setattr(program, name, value)
    program.version += 1
    program.changed_s = now_s
