"""FunctionSetAssignments and DERPrograms (with primacy): create, list, read, update, delete.

Writes go through services/programs.py (which also gives a new program its DefaultDERControl).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlalchemy.orm import Session

from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.schemas import FsaIn, FsaOut, Page, ProgramIn, ProgramOut, ProgramPatch
from gridshare.server.operator.services import programs
from gridshare.store.models import DerProgram, FunctionSetAssignments
from gridshare.store.queries.programs import (
    count_programs,
    delete_fsa,
    delete_program,
    fsas_page,
    programs_page,
)

router = APIRouter(tags=["function sets and programs"])


@router.get("/fsas", response_model=Page[FsaOut])
def list_fsas(session: Session = Depends(read_session), p: Paging = Depends(paging)) -> Page:
    total, rows = fsas_page(session, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[FsaOut.model_validate(r) for r in rows])


@router.post("/fsas", status_code=201, response_model=FsaOut)
def create_fsa(body: FsaIn, w: Writer = Depends(writer)) -> FsaOut:
    with w.transaction("fsa.create") as change:
        fsa = programs.create_fsa(change.session, w.ctx.settings, body.description, change.now_s)
        change.target, change.details = f"fsa:{fsa.id}", body.model_dump()
        return FsaOut.model_validate(fsa)


@router.get("/fsas/{fsa_id}", response_model=FsaOut)
def get_fsa(fsa_id: Id, session: Session = Depends(read_session)) -> FsaOut:
    return FsaOut.model_validate(found(session.get(FunctionSetAssignments, fsa_id), "FSA"))


@router.patch("/fsas/{fsa_id}", response_model=FsaOut)
def update_fsa(fsa_id: Id, body: FsaIn, w: Writer = Depends(writer)) -> FsaOut:
    with w.transaction("fsa.update", f"fsa:{fsa_id}") as change:
        fsa = found(change.session.get(FunctionSetAssignments, fsa_id), "FSA")
        programs.describe_fsa(fsa, body.description, change.now_s)
        change.details = body.model_dump()
        return FsaOut.model_validate(fsa)


@router.delete("/fsas/{fsa_id}", status_code=204)
def remove_fsa(fsa_id: Id, w: Writer = Depends(writer)) -> Response:
    """Only an empty FSA: deleting its programs (and their controls) must be a deliberate step."""
    with w.transaction("fsa.delete", f"fsa:{fsa_id}") as change:
        fsa = found(change.session.get(FunctionSetAssignments, fsa_id), "FSA")
        if count_programs(change.session, fsa.id):
            raise HTTPException(409, "the FSA still has DERPrograms; delete or move them first")
        delete_fsa(change.session, fsa)
    return Response(status_code=204)


@router.get("/programs", response_model=Page[ProgramOut])
def list_programs(
    session: Session = Depends(read_session),
    p: Paging = Depends(paging),
    fsa_id: int | None = Query(None, ge=0, le=2**31 - 1),
) -> Page:
    total, rows = programs_page(session, fsa_id=fsa_id, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[ProgramOut.model_validate(r) for r in rows])


@router.post("/programs", status_code=201, response_model=ProgramOut)
def create_program(body: ProgramIn, w: Writer = Depends(writer)) -> ProgramOut:
    with w.transaction("program.create") as change:
        found(change.session.get(FunctionSetAssignments, body.fsa_id), "FSA")
        program = programs.create_program(
            change.session,
            w.ctx.settings,
            fsa_id=body.fsa_id,
            description=body.description,
            primacy=body.primacy,
            now_s=change.now_s,
        )
        change.target, change.details = f"program:{program.id}", body.model_dump()
        return ProgramOut.model_validate(program)


@router.get("/programs/{program_id}", response_model=ProgramOut)
def get_program(program_id: Id, session: Session = Depends(read_session)) -> ProgramOut:
    return ProgramOut.model_validate(found(session.get(DerProgram, program_id), "DERProgram"))


@router.patch("/programs/{program_id}", response_model=ProgramOut)
def update_program(program_id: Id, body: ProgramPatch, w: Writer = Depends(writer)) -> ProgramOut:
    changes = body.model_dump(include=body.model_fields_set)
    with w.transaction("program.update", f"program:{program_id}") as change:
        program = found(change.session.get(DerProgram, program_id), "DERProgram")
        if "fsa_id" in changes:
            found(change.session.get(FunctionSetAssignments, changes["fsa_id"]), "FSA")
        programs.change_program(program, changes, change.now_s)
        change.details = changes
        return ProgramOut.model_validate(program)


@router.delete("/programs/{program_id}", status_code=204)
def remove_program(program_id: Id, w: Writer = Depends(writer)) -> Response:
    """Deletes the program with its controls, defaults and curves (devices stop seeing them)."""
    with w.transaction("program.delete", f"program:{program_id}") as change:
        delete_program(change.session, found(change.session.get(DerProgram, program_id), "DERProgram"))
    return Response(status_code=204)
