"""Site decommissioning: remove an EndDevice, list or clear its MirrorUsagePoints (services/decommission)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.deps import Id, found, read_session
from gridshare.server.operator.services import decommission
from gridshare.store.models import Site

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
        decommission.delete_site(change.session, site)
    return Response(status_code=204)


@router.get("/sites/{site_id}/mirror-usage-points", response_model=list[MupOut])
def list_site_mups(site_id: Id, session: Session = Depends(read_session)) -> list[MupOut]:
    site = found(session.get(Site, site_id), "site")
    return [MupOut.model_validate(r, from_attributes=True) for r in decommission.site_mirrors(session, site)]


@router.delete("/sites/{site_id}/mirror-usage-points", response_model=DeletedOut)
def delete_site_mups(site_id: Id, w: Writer = Depends(writer)) -> DeletedOut:
    """Remove every MirrorUsagePoint of the site with its readings (a device posts new ones)."""
    with w.transaction("mup.delete_all", f"site:{site_id}") as change:
        site = found(change.session.get(Site, site_id), "site")
        ids = decommission.delete_site_mirrors(change.session, site)
        change.details = {"deleted": ids}
        return DeletedOut(deleted=ids)
