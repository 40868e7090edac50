"""DERControls per site and program (create, list, cancel one or all) and DefaultDERControls.

Writes go through `store.queries.controls`, the same writers the envelope publisher uses, so the
device side cannot tell an operator's control from a computed one. Status in answers is derived from
the clock as the device port derives it (`server.shared.control_status`).
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from sqlalchemy.orm import Session

from gridshare.core.mrid import new_mrid
from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.auth import context
from gridshare.server.operator.control_schemas import (
    CONTROL_VALUE_FIELDS,
    CancelIn,
    CancelledOut,
    ControlIn,
    ControlOut,
    ControlValuesIn,
    DefaultControlIn,
    DefaultControlOut,
)
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.errors import FieldError
from gridshare.server.operator.routes_fallback import forget_override, guard_site_default
from gridshare.server.operator.schemas import Page
from gridshare.server.shared.control_status import derive_states
from gridshare.store.models import DerControl, DerProgram, Site
from gridshare.store.queries.controls import (
    cancel_control,
    cancellable_controls,
    control_in,
    controls_page,
    create_control,
    default_control_for,
    default_controls,
    delete_default_control,
    set_default_control,
)
from gridshare.store.queries.programs import live_controls

router = APIRouter(tags=["controls"])

STATUS_NAMES = {0: "scheduled", 1: "active", 2: "cancelled", 3: "cancelled_randomized", 4: "superseded"}


def _site_program(session: Session, site_id: int, program_id: int) -> tuple[Site, DerProgram]:
    return found(session.get(Site, site_id), "site"), found(session.get(DerProgram, program_id), "DERProgram")


def _statuses(session: Session, site: Site, program_id: int, now_s: int) -> dict[int | str, str]:
    states = derive_states(live_controls(session, site, program_id, now_s), now_s)
    return {s.control.id: STATUS_NAMES[s.status] for s in states}


def _out(control: DerControl, statuses: dict[int | str, str]) -> ControlOut:
    out = ControlOut.model_validate(control)
    out.status = statuses.get(control.id, "ended")
    return out


def _require_a_value(body: ControlValuesIn) -> None:
    if not body.any_value():
        raise FieldError(("body",), f"set at least one of {', '.join(CONTROL_VALUE_FIELDS)}")


@router.get("/sites/{site_id}/programs/{program_id}/controls", response_model=Page[ControlOut])
def list_controls(
    request: Request,
    site_id: Id,
    program_id: Id,
    session: Session = Depends(read_session),
    p: Paging = Depends(paging),
) -> Page:
    """Every control of the site in the program, ended ones too, newest start first."""
    site, program = _site_program(session, site_id, program_id)
    total, rows = controls_page(session, site_id=site.id, program_id=program.id, start=p.start, limit=p.limit)
    statuses = _statuses(session, site, program.id, context(request).now_s())
    return Page(total=total, start=p.start, items=[_out(c, statuses) for c in rows])


@router.post("/sites/{site_id}/programs/{program_id}/controls", status_code=201, response_model=ControlOut)
def add_control(site_id: Id, program_id: Id, body: ControlIn, w: Writer = Depends(writer)) -> ControlOut:
    """A DERControl active now (no `start_s`) or scheduled; it must not have ended already."""
    _require_a_value(body)
    with w.transaction("control.create") as change:
        site, program = _site_program(change.session, site_id, program_id)
        start_s = change.now_s if body.start_s is None else body.start_s
        if start_s + body.duration_s <= change.now_s:
            raise FieldError(("body", "start_s"), f"the control would have ended by now ({change.now_s})")
        control = create_control(
            change.session,
            site=site,
            program=program,
            mrid=new_mrid(w.ctx.settings.pen),
            start_s=start_s,
            duration_s=body.duration_s,
            values=body.values(),
            now_s=change.now_s,
            randomize_start_s=body.randomize_start_s,
            randomize_duration_s=body.randomize_duration_s,
            response_required=body.response_required,
            description=body.description,
        )
        change.target = f"control:{control.id}"
        change.details = {"site_id": site.id, "program_id": program.id, **body.model_dump(exclude_none=True)}
        change.details["start_s"] = start_s
        return _out(control, _statuses(change.session, site, program.id, change.now_s))


@router.get("/sites/{site_id}/programs/{program_id}/controls/{control_id}", response_model=ControlOut)
def get_control(
    request: Request, site_id: Id, program_id: Id, control_id: Id, session: Session = Depends(read_session)
) -> ControlOut:
    site, program = _site_program(session, site_id, program_id)
    control = found(
        control_in(session, site_id=site.id, program_id=program.id, control_id=control_id), "DERControl"
    )
    return _out(control, _statuses(session, site, program.id, context(request).now_s()))


@router.post("/sites/{site_id}/programs/{program_id}/controls/{control_id}/cancel", response_model=ControlOut)
def cancel_one(
    site_id: Id,
    program_id: Id,
    control_id: Id,
    body: CancelIn | None = Body(None),
    w: Writer = Depends(writer),
) -> ControlOut:
    randomized = body.randomized if body else False
    with w.transaction("control.cancel", f"control:{control_id}") as change:
        site, program = _site_program(change.session, site_id, program_id)
        control = found(
            control_in(change.session, site_id=site.id, program_id=program.id, control_id=control_id),
            "DERControl",
        )
        if control.cancelled_s is not None:
            raise HTTPException(409, "the control is already cancelled")
        if control.start_s + control.duration_s <= change.now_s:
            raise HTTPException(409, "the control has ended")
        cancel_control(change.session, control, change.now_s, randomized=randomized)
        change.details = {"randomized": randomized}
        return _out(control, _statuses(change.session, site, program.id, change.now_s))


def _cancel_all(w: Writer, program_id: int, site_id: int | None, randomized: bool) -> CancelledOut:
    target = f"program:{program_id}" + ("" if site_id is None else f"/site:{site_id}")
    with w.transaction("control.cancel_all", target) as change:
        found(change.session.get(DerProgram, program_id), "DERProgram")
        if site_id is not None:
            found(change.session.get(Site, site_id), "site")
        rows = cancellable_controls(
            change.session, program_id=program_id, site_id=site_id, now_s=change.now_s
        )
        for control in rows:
            cancel_control(change.session, control, change.now_s, randomized=randomized)
        ids = [c.id for c in rows]
        change.details = {"cancelled": ids, "randomized": randomized}
        return CancelledOut(cancelled=ids)


@router.post("/sites/{site_id}/programs/{program_id}/controls/cancel-all", response_model=CancelledOut)
def cancel_all_for_site(
    site_id: Id, program_id: Id, body: CancelIn | None = Body(None), w: Writer = Depends(writer)
) -> CancelledOut:
    """Cancel every control of the site in the program that has not ended."""
    return _cancel_all(w, program_id, site_id, body.randomized if body else False)


@router.post("/programs/{program_id}/controls/cancel-all", response_model=CancelledOut)
def cancel_all_in_program(
    program_id: Id, body: CancelIn | None = Body(None), w: Writer = Depends(writer)
) -> CancelledOut:
    """Cancel every control of the program, for every site, that has not ended."""
    return _cancel_all(w, program_id, None, body.randomized if body else False)


# --- DefaultDERControls ------------------------------------------------------------------------------------


@router.get("/programs/{program_id}/default-controls", response_model=list[DefaultControlOut])
def list_defaults(program_id: Id, session: Session = Depends(read_session)) -> list[DefaultControlOut]:
    """The program-wide default first, then each site's own."""
    found(session.get(DerProgram, program_id), "DERProgram")
    return [DefaultControlOut.model_validate(d) for d in default_controls(session, program_id)]


@router.put("/programs/{program_id}/default-control", response_model=DefaultControlOut)
def set_program_default(
    program_id: Id, body: DefaultControlIn, w: Writer = Depends(writer)
) -> DefaultControlOut:
    """Replace the program-wide default (fields not sent are cleared)."""
    return _set_default(w, program_id, None, body)


@router.put("/sites/{site_id}/programs/{program_id}/default-control", response_model=DefaultControlOut)
def set_site_default(
    site_id: Id,
    program_id: Id,
    body: DefaultControlIn,
    w: Writer = Depends(writer),
    override: bool = Query(False, description="allow values above the computed safe fallback (audited)"),
) -> DefaultControlOut:
    """A site's own default in the program, which it sees instead of the program-wide one.

    For a site with a computed fallback, limits left out take the safe values and larger ones are
    refused (422) unless `override=true`.
    """
    return _set_default(w, program_id, site_id, body, override)


@router.delete("/sites/{site_id}/programs/{program_id}/default-control", status_code=204)
def remove_site_default(site_id: Id, program_id: Id, w: Writer = Depends(writer)) -> Response:
    """Drop a site's own default: the site falls back to the program-wide one."""
    target = f"program:{program_id}/site:{site_id}"
    with w.transaction("default_control.delete", target) as change:
        _site_program(change.session, site_id, program_id)
        row = found(default_control_for(change.session, program_id, site_id), "site default control")
        delete_default_control(change.session, row)
        forget_override(change.session, site_id, change.now_s)
    return Response(status_code=204)


def _set_default(
    w: Writer, program_id: int, site_id: int | None, body: DefaultControlIn, override: bool = False
) -> DefaultControlOut:
    if body.set_grad_w_hundredths is None:
        _require_a_value(body)
    target = f"program:{program_id}" + ("" if site_id is None else f"/site:{site_id}")
    with w.transaction("default_control.set", target) as change:
        program = found(change.session.get(DerProgram, program_id), "DERProgram")
        site = None if site_id is None else found(change.session.get(Site, site_id), "site")
        checked = (
            {}
            if site is None
            else guard_site_default(change.session, site.id, body, override, w.caller.name, change.now_s)
        )
        row = set_default_control(
            change.session,
            program=program,
            site=site,
            mrid=new_mrid(w.ctx.settings.pen),
            values=body.values(),
            now_s=change.now_s,
            set_grad_w_hundredths=body.set_grad_w_hundredths,
            description=body.description,
        )
        change.details = {**body.model_dump(exclude_none=True), **checked}
        return DefaultControlOut.model_validate(row)
