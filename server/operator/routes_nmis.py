"""NMIs: which EndDevice each is bound to, moving or releasing a binding, assigning NMIs to aggregators.

An NMI binds one EndDevice to one site of the network file, whose envelope it then receives, so these
are the writes that decide who gets which site's limits. Devices claim NMIs themselves with a
ConnectionPoint write, but never one another EndDevice holds; when that claim is wrong, the operator
moves or releases it here. Every write is audited and bumps the publication counter in its transaction.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from sqlalchemy.orm import Session

from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.deps import Paging, found, paging, read_session
from gridshare.server.operator.schemas import NmiAggregatorIn, NmiOut, NmiSiteIn, Page
from gridshare.store.models import Aggregator, Site
from gridshare.store.queries import nmis as q

router = APIRouter(tags=["sites"])

NmiPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,32}$", description="NMI: 1-32 letters or digits")]


def _out(session: Session, nmi: str) -> NmiOut:
    b = q.binding(session, nmi)
    return NmiOut(
        nmi=b.nmi,
        site_id=b.site_id,
        site_aggregator_id=b.site_aggregator_id,
        assigned_aggregator_id=b.assigned_aggregator_id,
        assigned_s=b.assigned_s,
    )


@router.get("/nmis", response_model=Page[NmiOut])
def list_assigned(
    session: Session = Depends(read_session),
    p: Paging = Depends(paging),
    aggregator_id: int | None = Query(None, ge=0, le=2**31 - 1),
) -> Page:
    """NMIs assigned to aggregators (bound ones are on each site, `GET /sites`)."""
    total, rows = q.assignments_page(session, aggregator_id=aggregator_id, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[_out(session, r.nmi) for r in rows])


@router.get("/nmis/{nmi}", response_model=NmiOut)
def get_nmi(nmi: NmiPath, session: Session = Depends(read_session)) -> NmiOut:
    return _out(session, nmi)


@router.put("/nmis/{nmi}/site", response_model=NmiOut)
def bind(nmi: NmiPath, body: NmiSiteIn, w: Writer = Depends(writer)) -> NmiOut:
    """Bind the NMI to this site, releasing it from the EndDevice that held it (a move)."""
    with w.transaction("nmi.bind", f"nmi:{nmi}") as change:
        session = change.session
        site = found(session.get(Site, body.site_id), "site")
        reason = q.operator_bind_problem(session, site, nmi)
        if reason is not None:
            raise HTTPException(409, reason)
        before = site.nmi
        moved_from = q.move_nmi(session, nmi, site, change.now_s)
        change.details = {
            "nmi": nmi,
            "site_id": site.id,
            "from_site_id": moved_from,
            "site_nmi_before": before,
        }
        return _out(session, nmi)


@router.delete("/nmis/{nmi}/site", status_code=204)
def release(nmi: NmiPath, w: Writer = Depends(writer)) -> Response:
    """Unbind the NMI: its EndDevice falls back to its DefaultDERControl, and the NMI may be claimed again."""
    with w.transaction("nmi.release", f"nmi:{nmi}") as change:
        site_id = q.release_nmi(change.session, nmi, change.now_s)
        if site_id is None:
            raise HTTPException(404, f"NMI {nmi} is not bound to any EndDevice")
        change.details = {"nmi": nmi, "from_site_id": site_id}
    return Response(status_code=204)


@router.put("/nmis/{nmi}/aggregator", response_model=NmiOut)
def assign(nmi: NmiPath, body: NmiAggregatorIn, w: Writer = Depends(writer)) -> NmiOut:
    """Reserve the NMI for one aggregator: only its EndDevices may bind it from then on."""
    with w.transaction("nmi.assign", f"nmi:{nmi}") as change:
        session = change.session
        found(session.get(Aggregator, body.aggregator_id), "aggregator")
        current = q.binding(session, nmi)
        if current.site_id is not None and current.site_aggregator_id != body.aggregator_id:
            raise HTTPException(
                409,
                f"NMI {nmi} is bound to site {current.site_id}, which is not an EndDevice of aggregator "
                f"{body.aggregator_id}: move or release it first",
            )
        q.assign_nmi(session, nmi, body.aggregator_id, change.now_s)
        change.details = {
            "nmi": nmi,
            "aggregator_id": body.aggregator_id,
            "previous_aggregator_id": current.assigned_aggregator_id,
        }
        return _out(session, nmi)


@router.delete("/nmis/{nmi}/aggregator", status_code=204)
def unassign(nmi: NmiPath, w: Writer = Depends(writer)) -> Response:
    with w.transaction("nmi.unassign", f"nmi:{nmi}") as change:
        row = found(q.assignment_of(change.session, nmi), "NMI assignment")
        change.details = {"nmi": nmi, "aggregator_id": row.aggregator_id}
        q.drop_assignment(change.session, row)
    return Response(status_code=204)
