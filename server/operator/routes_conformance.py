"""Operator needs the conformance run brought to light: decommission an EndDevice, clear its mirrors.

Both are ordinary operator tasks (a site leaves the scheme; a meter is replaced and its old
MirrorUsagePoints must go), and the cactus admin plugin composes them with the other routes instead of
writing to the database.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.deps import Id, found, read_session
from gridshare.store.models import MirrorUsagePoint, Site

router = APIRouter(tags=["sites"])


class MupOut(BaseModel):
    id: int
    mrid: str
    description: str | None
    post_rate_s: int | None
    changed_s: int


class DeletedOut(BaseModel):
    deleted: list[int]


@router.delete("/sites/{site_id}", status_code=204)
def delete_site(site_id: Id, w: Writer = Depends(writer)) -> Response:
    """Decommission an EndDevice: its DERs, controls, own defaults, mirrors and readings go with it.

    The certificate is untouched: a device with open registration may register again.
    """
    with w.transaction("site.delete", f"site:{site_id}") as change:
        site = found(change.session.get(Site, site_id), "site")
        change.details = {"lfdi": site.lfdi, "aggregator_id": site.aggregator_id}
        change.session.execute(delete(Site).where(Site.id == site.id))
    return Response(status_code=204)


@router.get("/sites/{site_id}/mirror-usage-points", response_model=list[MupOut])
def list_site_mups(site_id: Id, session: Session = Depends(read_session)) -> list[MupOut]:
    site = found(session.get(Site, site_id), "site")
    rows = session.execute(
        select(MirrorUsagePoint).where(MirrorUsagePoint.site_id == site.id).order_by(MirrorUsagePoint.id)
    ).scalars()
    return [MupOut.model_validate(r, from_attributes=True) for r in rows]


@router.delete("/sites/{site_id}/mirror-usage-points", response_model=DeletedOut)
def delete_site_mups(site_id: Id, w: Writer = Depends(writer)) -> DeletedOut:
    """Remove every MirrorUsagePoint of the site with its readings (a device posts new ones)."""
    with w.transaction("mup.delete_all", f"site:{site_id}") as change:
        site = found(change.session.get(Site, site_id), "site")
        ids = list(
            change.session.execute(
                select(MirrorUsagePoint.id).where(MirrorUsagePoint.site_id == site.id)
            ).scalars()
        )
        if ids:
            change.session.execute(delete(MirrorUsagePoint).where(MirrorUsagePoint.id.in_(ids)))
        change.details = {"deleted": ids}
        return DeletedOut(deleted=ids)
