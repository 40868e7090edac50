"""The audit log, newest first; viewers may read it (who changed what is not a secret among staff)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from gridshare.server.operator.deps import Paging, paging, read_session
from gridshare.server.operator.schemas import AuditOut, Page
from gridshare.store.queries.access import audit_page

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=Page[AuditOut])
def list_audit(session: Session = Depends(read_session), p: Paging = Depends(paging)) -> Page:
    total, rows = audit_page(session, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[AuditOut.model_validate(r) for r in rows])
