"""DERCurves of a program (volt-var, volt-watt, ...): add, list, read, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from gridshare.core.mrid import new_mrid
from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.control_schemas import CurveIn, CurveOut
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.schemas import Page
from gridshare.store.models import DerProgram
from gridshare.store.queries.controls import add_curve, delete_curve
from gridshare.store.queries.programs import get_curve, list_curves

router = APIRouter(tags=["curves"])


@router.get("/programs/{program_id}/curves", response_model=Page[CurveOut])
def list_program_curves(
    program_id: Id, session: Session = Depends(read_session), p: Paging = Depends(paging)
) -> Page:
    found(session.get(DerProgram, program_id), "DERProgram")
    total, rows = list_curves(session, program_id, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[CurveOut.model_validate(r) for r in rows])


@router.post("/programs/{program_id}/curves", status_code=201, response_model=CurveOut)
def create_curve(program_id: Id, body: CurveIn, w: Writer = Depends(writer)) -> CurveOut:
    with w.transaction("curve.create") as change:
        program = found(change.session.get(DerProgram, program_id), "DERProgram")
        curve = add_curve(
            change.session,
            program=program,
            mrid=new_mrid(w.ctx.settings.pen),
            curve_type=body.curve_type,
            points=body.points,
            now_s=change.now_s,
            x_multiplier=body.x_multiplier,
            y_multiplier=body.y_multiplier,
            y_ref_type=body.y_ref_type,
            description=body.description,
        )
        change.target, change.details = f"curve:{curve.id}", {"program_id": program.id, **body.model_dump()}
        return CurveOut.model_validate(curve)


@router.get("/programs/{program_id}/curves/{curve_id}", response_model=CurveOut)
def get_program_curve(program_id: Id, curve_id: Id, session: Session = Depends(read_session)) -> CurveOut:
    return CurveOut.model_validate(found(get_curve(session, program_id, curve_id), "DERCurve"))


@router.delete("/programs/{program_id}/curves/{curve_id}", status_code=204)
def remove_curve(program_id: Id, curve_id: Id, w: Writer = Depends(writer)) -> Response:
    with w.transaction("curve.delete", f"curve:{curve_id}") as change:
        delete_curve(change.session, found(get_curve(change.session, program_id, curve_id), "DERCurve"))
    return Response(status_code=204)
