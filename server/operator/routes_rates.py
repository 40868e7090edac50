"""Poll rates per resource and the MirrorUsagePoint post rate, changeable while the server runs.

Overrides are stored (they survive a restart) and the write bumps the publication counter; the device
port re-reads overrides once per counter value, so the next device request sees the new rate.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from gridshare.core.settings import Settings
from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.auth import context
from gridshare.server.operator.deps import read_session
from gridshare.server.operator.schemas import RatesOut, RatesPatch
from gridshare.store.queries.runtime_settings import (
    MUP_POST_RATE_KEY,
    POLL_RATE_KEY,
    get_setting,
    poll_rate_overrides,
    set_mup_post_rate,
    set_setting,
)

router = APIRouter(tags=["rates"])


def _rates(session: Session, settings: Settings) -> RatesOut:
    overrides = poll_rate_overrides(session)
    post_rate_s = get_setting(session, MUP_POST_RATE_KEY)
    overridden = sorted(overrides) + ([] if post_rate_s is None else ["mup_post_rate_s"])
    return RatesOut(
        poll_rates_s={**settings.poll_rates_s, **overrides},
        mup_post_rate_s=settings.mup_post_rate_s if post_rate_s is None else int(post_rate_s),
        overridden=overridden,
    )


@router.get("/rates", response_model=RatesOut)
def get_rates(request: Request, session: Session = Depends(read_session)) -> RatesOut:
    return _rates(session, context(request).settings)


@router.patch("/rates", response_model=RatesOut)
def change_rates(body: RatesPatch, w: Writer = Depends(writer)) -> RatesOut:
    """Only the rates sent change; a null removes the override and the configured value applies again."""
    with w.transaction("rates.update", "rates") as change:
        for resource, rate_s in body.poll_rates_s.items():
            set_setting(change.session, POLL_RATE_KEY + resource, rate_s, change.now_s)
        if "mup_post_rate_s" in body.model_fields_set:
            set_mup_post_rate(change.session, body.mup_post_rate_s, change.now_s)
        change.details = body.model_dump(include=body.model_fields_set)
        return _rates(change.session, w.ctx.settings)
