"""FunctionSetAssignments and DERPrograms (with primacy): create, list, read, update, delete.

A new program gets its program-wide DefaultDERControl from the seeded defaults at once: CSIP-AUS
expects every DERProgram to link one, and a device must always have a safe fallback.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlalchemy.orm import Session

from gridshare.core.mrid import new_mrid
from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.schemas import FsaIn, FsaOut, Page, ProgramIn, ProgramOut, ProgramPatch
from gridshare.store.models import DerProgram, FunctionSetAssignments
from gridshare.store.queries.controls import ControlValues, set_default_control
from gridshare.store.queries.operator import delete_fsa, delete_program, fsas_page, programs_page
from gridshare.store.queries.programs import count_programs

router = APIRouter(tags=["function sets and programs"])


@router.get("/fsas", response_model=Page[FsaOut])
def list_fsas(session: Session = Depends(read_session), p: Paging = Depends(paging)) -> Page:
    total, rows = fsas_page(session, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[FsaOut.model_validate(r) for r in rows])


@router.post("/fsas", status_code=201, response_model=FsaOut)
def create_fsa(body: FsaIn, w: Writer = Depends(writer)) -> FsaOut:
    with w.transaction("fsa.create") as change:
        fsa = FunctionSetAssignments(
            mrid=new_mrid(w.ctx.settings.pen), description=body.description, changed_s=change.now_s
        )
        change.session.add(fsa)
        change.session.flush()
        change.target, change.details = f"fsa:{fsa.id}", body.model_dump()
        return FsaOut.model_validate(fsa)


@router.get("/fsas/{fsa_id}", response_model=FsaOut)
def get_fsa(fsa_id: Id, session: Session = Depends(read_session)) -> FsaOut:
    return FsaOut.model_validate(found(session.get(FunctionSetAssignments, fsa_id), "FSA"))


@router.patch("/fsas/{fsa_id}", response_model=FsaOut)
def update_fsa(fsa_id: Id, body: FsaIn, w: Writer = Depends(writer)) -> FsaOut:
    with w.transaction("fsa.update", f"fsa:{fsa_id}") as change:
        fsa = found(change.session.get(FunctionSetAssignments, fsa_id), "FSA")
        fsa.description, fsa.changed_s = body.description, change.now_s
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
    settings = w.ctx.settings
    with w.transaction("program.create") as change:
        found(change.session.get(FunctionSetAssignments, body.fsa_id), "FSA")
        program = DerProgram(
            fsa_id=body.fsa_id,
            mrid=new_mrid(settings.pen),
            description=body.description,
            primacy=body.primacy,
            changed_s=change.now_s,
        )
        change.session.add(program)
        change.session.flush()
        set_default_control(
            change.session,
            program=program,
            site=None,
            mrid=new_mrid(settings.pen),
            values=ControlValues(
                export_limit_w=settings.default_export_limit_w, import_limit_w=settings.default_import_limit_w
            ),
            now_s=change.now_s,
            set_grad_w_hundredths=settings.default_set_grad_w_hundredths,
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
        for name, value in changes.items():
            setattr(program, name, value)
        program.version += 1
        program.changed_s = change.now_s
        change.details = changes
        return ProgramOut.model_validate(program)


@router.delete("/programs/{program_id}", status_code=204)
def remove_program(program_id: Id, w: Writer = Depends(writer)) -> Response:
    """Deletes the program with its controls, defaults and curves (devices stop seeing them)."""
    with w.transaction("program.delete", f"program:{program_id}") as change:
        delete_program(change.session, found(change.session.get(DerProgram, program_id), "DERProgram"))
    return Response(status_code=204)
