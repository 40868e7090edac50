"""Subscriptions and their notifications as operators see them: who subscribed to what, what was sent,
what keeps failing, and whether the notifier has caught up with the latest change."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from gridshare.server.operator.audit import Writer, writer
from gridshare.server.operator.auth import context
from gridshare.server.operator.deps import Id, Paging, found, paging, read_session
from gridshare.server.operator.schemas import NotificationOut, NotificationStatusOut, Page, SubscriptionOut
from gridshare.store.models import Subscription
from gridshare.store.queries.notification_views import (
    SubscriptionView,
    change_marks,
    outbox_page,
    outbox_summary,
    seen,
    subscription_view,
    subscriptions_page,
)
from gridshare.store.queries.subscriptions import drop_subscription

router = APIRouter(tags=["subscriptions"])


def _out(v: SubscriptionView) -> SubscriptionOut:
    s = v.subscription
    return SubscriptionOut(
        id=s.id,
        aggregator_id=s.aggregator_id,
        site_id=s.site_id,
        client_lfdi=s.client_lfdi,
        resource_href=s.resource_href,
        notification_uri=s.notification_uri,
        limit=s.result_limit,
        created_s=s.created_s,
        changed_s=s.changed_s,
        pending=v.pending,
        last_delivered_s=v.last_delivered_s,
        failed_s=s.failed_s,
        last_error=s.last_error,
        cancelled_s=s.cancelled_s,
    )


@router.get("/subscriptions", response_model=Page[SubscriptionOut])
def list_subscriptions(
    session: Session = Depends(read_session),
    p: Paging = Depends(paging),
    aggregator_id: int | None = Query(None, ge=0, le=2**31 - 1, description="only this aggregator's"),
    failed: bool = Query(False, description="only subscribers whose deliveries keep failing"),
) -> Page:
    total, views = subscriptions_page(
        session, aggregator_id=aggregator_id, failed_only=failed, start=p.start, limit=p.limit
    )
    return Page(total=total, start=p.start, items=[_out(v) for v in views])


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def get_subscription(subscription_id: Id, session: Session = Depends(read_session)) -> SubscriptionOut:
    return _out(found(subscription_view(session, subscription_id), "subscription"))


@router.get("/subscriptions/{subscription_id}/notifications", response_model=Page[NotificationOut])
def list_notifications(
    subscription_id: Id, session: Session = Depends(read_session), p: Paging = Depends(paging)
) -> Page:
    """Newest first, with the body as sent; delivered and abandoned ones are kept for a week."""
    found(session.get(Subscription, subscription_id), "subscription")
    total, rows = outbox_page(session, subscription_id, start=p.start, limit=p.limit)
    return Page(total=total, start=p.start, items=[NotificationOut.model_validate(r) for r in rows])


@router.delete("/subscriptions/{subscription_id}", status_code=204)
def remove_subscription(subscription_id: Id, w: Writer = Depends(writer)) -> Response:
    """Drop a subscriber (e.g. one that keeps failing); its pending notifications go with it."""
    with w.transaction("subscription.delete", f"subscription:{subscription_id}") as change:
        s = found(change.session.get(Subscription, subscription_id), "subscription")
        change.details = {"aggregator_id": s.aggregator_id, "resource": s.resource_href}
        drop_subscription(change.session, s)
    return Response(status_code=204)


@router.get("/notifications/status", response_model=NotificationStatusOut)
def notification_status(request: Request, session: Session = Depends(read_session)) -> NotificationStatusOut:
    """Caught up = the notifier has scanned the latest change and no notification is about to be sent
    (ones waiting for a retry after a failure do not count): the moment to look at a subscriber."""
    # The counters only grow and the notifier's marks never pass them: equal sums = caught up on all.
    changes = sum(change_marks(session))
    marks = seen(session)
    summary = outbox_summary(session, context(request).now_s())
    scanned = None if marks is None else sum(marks)
    return NotificationStatusOut(
        changes=changes,
        scanned=scanned,
        caught_up=scanned is not None and scanned >= changes and summary.in_progress == 0,
        pending=summary.pending,
        in_progress=summary.in_progress,
        waiting_retry=summary.waiting_retry,
        failed_subscriptions=summary.failed_subscriptions,
    )
