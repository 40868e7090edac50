"""Fallback: per-feeder envelope status, the computed safe defaults, and the check on operator defaults.

`GET /feeders/status` says per feeder whether devices run on dynamic envelopes, stale ones or
fallback limits, since when and why (the engine logs the same line on every change). `GET /fallback`
lists each dynamic site's computed safe DefaultDERControl values and the constraint that sets them.
`guard_site_default` is what the default-control endpoints call: an operator may lower a site's
default but not raise it above the safe values without `override=true`, which the audit log records.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from gridshare.fallback.safe_default import SafeDefault
from gridshare.server.operator.auth import context
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.errors import FieldError
from gridshare.server.operator.schemas import Page
from gridshare.store.models import Site
from gridshare.store.publication.fallback_defaults import all_safe_defaults, safe_default_for, set_override
from gridshare.store.publication.status import effective, read_statuses

router = APIRouter(tags=["fallback"])


class FeederStatusOut(BaseModel):
    feeder: str
    state: str  # dynamic | stale | fallback
    since_s: int
    reason: str
    detail: str
    network_id: int | None
    envelopes_until_s: int | None
    fallback_sites: int | None
    #: network site id -> why: sites held at fallback limits (untrusted data) while the feeder is dynamic
    site_fallbacks: dict[str, str] | None = None
    line: str  # what the engine's log says


class SafeDefaultOut(BaseModel):
    site_id: int
    network_site_id: str
    export_limit_w: float
    import_limit_w: float
    generation_limit_w: float
    load_limit_w: float
    set_grad_w_hundredths: int
    explain: str


def _safe_out(site_id: int, safe: SafeDefault) -> SafeDefaultOut:
    return SafeDefaultOut(site_id=site_id, **safe.as_json())


@router.get("/feeders/status", response_model=list[FeederStatusOut])
def feeder_status(request: Request, session: Session = Depends(read_session)) -> list[FeederStatusOut]:
    """Per feeder: dynamic, stale or fallback, since when and why, as devices experience it now."""
    now_s = context(request).now_s()
    out = []
    for status in read_statuses(session):
        now = effective(status, now_s)
        out.append(
            FeederStatusOut(
                **{k: getattr(now, k) for k in FeederStatusOut.model_fields if k != "line"}, line=now.line()
            )
        )
    return out


@router.get("/fallback", response_model=Page[SafeDefaultOut])
def list_safe_defaults(session: Session = Depends(read_session), p: Paging = Depends(paging)) -> Page:
    """Every dynamic site's computed safe default values, by store site id, with what sets them."""
    rows = sorted(all_safe_defaults(session).items())
    items = [_safe_out(i, s) for i, s in rows[p.start : p.start + p.limit]]
    return Page(total=len(rows), start=p.start, items=items)


@router.get("/sites/{site_id}/fallback", response_model=SafeDefaultOut)
def site_safe_default(site_id: Id, session: Session = Depends(read_session)) -> SafeDefaultOut:
    found(session.get(Site, site_id), "site")
    safe = found(safe_default_for(session, site_id), "computed fallback for this site (is it dynamic?)")
    return _safe_out(site_id, safe)


def guard_site_default(
    session: Session, site_id: int, body: Any, override: bool, actor: str, now_s: int
) -> dict[str, Any]:
    """Check (and complete) a site default against the computed safe values before it is written.

    Limits the body leaves out take the safe value (a site with a computed fallback never gets an
    unlimited default by omission). A value above the safe one is a 422 naming the field unless
    `override` is set; then the override is recorded (so the engine keeps the row) and returned for
    the audit entry. Mutates `body`; returns what the audit entry should add.
    """
    safe = safe_default_for(session, site_id)
    if safe is None:
        return {}
    filled, above = [], []
    for name in SafeDefault.FIELDS:
        value, limit = getattr(body, name), getattr(safe, name)
        if value is None:
            setattr(body, name, limit)
            filled.append(name)
        elif value > limit or (name == "set_grad_w_hundredths" and value == 0):
            above.append((name, value, limit))
    if above and not override:
        errors = [
            (
                ("body", name),
                f"{value:g} is above the computed safe fallback {limit:g} for this site "
                f"({safe.explain}); send override=true to exceed it (audit-logged)",
            )
            for name, value, limit in above
        ]
        raise FieldError(errors[0][0], errors[0][1], *errors[1:])
    record = (
        {"actor": actor, "at_s": now_s, "fields": {n: {"value": v, "safe": s} for n, v, s in above}}
        if above
        else None
    )
    set_override(session, site_id, record, now_s)
    details: dict[str, Any] = {"safe": {n: getattr(safe, n) for n in SafeDefault.FIELDS}}
    if filled:
        details["filled_from_safe"] = filled
    if above:
        details["override"] = True
        details["above_safe"] = [n for n, _, _ in above]
    return details


def forget_override(session: Session, site_id: int, now_s: int) -> None:
    """The site's own default is gone: so is any override of the safe values."""
    set_override(session, site_id, None, now_s)
