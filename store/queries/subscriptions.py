"""Subscriptions (always through the aggregator's scope) and the notification outbox.

The outbox keeps at most one pending notification per subscription: a newer one supersedes the older
(a Notification carries the whole current representation, so the older adds nothing) and inherits its
retry state, so changes never reset the backoff of a failing subscriber. Claims and outcomes are
compare-and-set updates, so two notifiers on one database never send the same row twice at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from gridshare.store.models import NotificationOutbox, Subscription
from gridshare.store.scope import ClientScope

# --- subscriptions (client-visible) -------------------------------------------------------------------


def _in_list(scope: ClientScope, site_id: int | None) -> tuple[ColumnElement[bool], ...]:
    owner = Subscription.site_id.is_(None) if site_id is None else Subscription.site_id == site_id
    return (Subscription.aggregator_id == scope.aggregator_id, owner, Subscription.cancelled_s.is_(None))


def list_subscriptions(
    session: Session, scope: ClientScope, site_id: int | None, *, start: int, limit: int
) -> tuple[int, list[Subscription]]:
    """A page of the SubscriptionList of EndDevice `site_id` (None: /edev/0), oldest first, and the total."""
    where = _in_list(scope, site_id)
    total = session.execute(select(func.count(Subscription.id)).where(*where)).scalar_one()
    page = (
        session.execute(
            select(Subscription).where(*where).order_by(Subscription.id).offset(start).limit(limit)
        )
        .scalars()
        .all()
    )
    return int(total), list(page)


def get_subscription(
    session: Session, scope: ClientScope, site_id: int | None, subscription_id: int
) -> Subscription | None:
    return session.execute(
        select(Subscription).where(*_in_list(scope, site_id), Subscription.id == subscription_id)
    ).scalar_one_or_none()


def find_renewal(
    session: Session, scope: ClientScope, site_id: int | None, resource_href: str, notification_uri: str
) -> Subscription | None:
    """The subscription a POST with the same resource and notificationURI renews, if there is one."""
    return (
        session.execute(
            select(Subscription)
            .where(
                *_in_list(scope, site_id),
                Subscription.resource_href == resource_href,
                Subscription.notification_uri == notification_uri,
            )
            .order_by(Subscription.id)
        )
        .scalars()
        .first()
    )


def count_for_aggregator(session: Session, scope: ClientScope) -> int:
    return int(
        session.execute(
            select(func.count(Subscription.id)).where(
                Subscription.aggregator_id == scope.aggregator_id, Subscription.cancelled_s.is_(None)
            )
        ).scalar_one()
    )


# --- the notifier's side (no client scope: it serves every subscriber) ------------------------------------


def all_subscriptions(session: Session) -> list[Subscription]:
    """Every subscription still in force (cancelled ones only wait for their last notification)."""
    return list(
        session.execute(
            select(Subscription).where(Subscription.cancelled_s.is_(None)).order_by(Subscription.id)
        )
        .scalars()
        .all()
    )


def drop_subscription(session: Session, subscription: Subscription) -> None:
    """Remove a subscriber (operator action); its pending notifications cascade with it."""
    session.delete(subscription)


def mark_queued(session: Session, subscription_id: int, seen_sha256: str | None, new_sha256: str) -> bool:
    """Record that `new_sha256` was queued, only if nobody else queued since we read `seen_sha256`."""
    seen = (
        Subscription.last_sha256.is_(None) if seen_sha256 is None else Subscription.last_sha256 == seen_sha256
    )
    result = session.execute(
        update(Subscription).where(Subscription.id == subscription_id, seen).values(last_sha256=new_sha256)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def _pending() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (NotificationOutbox.delivered_s.is_(None), NotificationOutbox.abandoned_s.is_(None))


def enqueue(
    session: Session,
    subscription: Subscription,
    *,
    body: str,
    content_type: str,
    now_s: int,
    max_attempts: int,
) -> NotificationOutbox:
    """Queue a notification, superseding a pending one for the same subscription (keeping its retry state).

    A subscriber already marked failed gets one attempt per new notification until a delivery succeeds.
    """
    older = (
        session.execute(
            select(NotificationOutbox).where(
                NotificationOutbox.subscription_id == subscription.id, *_pending()
            )
        )
        .scalars()
        .all()
    )
    attempts, next_attempt_s = (max_attempts - 1 if subscription.failed_s is not None else 0), now_s
    for row in older:
        row.abandoned_s = now_s
        row.last_error = "superseded by a newer notification"
        attempts, next_attempt_s = max(attempts, row.attempts), max(next_attempt_s, row.next_attempt_s)
    row = NotificationOutbox(
        subscription_id=subscription.id,
        body=body,
        content_type=content_type,
        attempts=attempts,
        next_attempt_s=next_attempt_s,
        created_s=now_s,
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class Due:
    """A pending notification with what delivery needs, read in one query."""

    id: int
    subscription_id: int
    notification_uri: str
    body: str
    content_type: str
    attempts: int
    next_attempt_s: int


def due_notifications(session: Session, now_s: int, limit: int) -> list[Due]:
    rows = session.execute(
        select(
            NotificationOutbox.id,
            NotificationOutbox.subscription_id,
            Subscription.notification_uri,
            NotificationOutbox.body,
            NotificationOutbox.content_type,
            NotificationOutbox.attempts,
            NotificationOutbox.next_attempt_s,
        )
        .join(Subscription, Subscription.id == NotificationOutbox.subscription_id)
        .where(*_pending(), NotificationOutbox.next_attempt_s <= now_s)
        .order_by(NotificationOutbox.next_attempt_s, NotificationOutbox.id)
        .limit(limit)
    ).all()
    return [Due(*row) for row in rows]


def claim(session: Session, due: Due, until_s: int) -> bool:
    """Take `due` for one attempt: nobody else sends it before `until_s` (after a crash, retried then)."""
    result = session.execute(
        update(NotificationOutbox)
        .where(
            NotificationOutbox.id == due.id,
            NotificationOutbox.next_attempt_s == due.next_attempt_s,
            *_pending(),
        )
        .values(next_attempt_s=until_s)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def record_delivered(session: Session, due: Due, now_s: int) -> None:
    """Delivered: clear the subscriber's failure mark, and let a newer pending notification go at once."""
    session.execute(
        update(NotificationOutbox).where(NotificationOutbox.id == due.id).values(delivered_s=now_s)
    )
    session.execute(
        update(Subscription)
        .where(Subscription.id == due.subscription_id)
        .values(failed_s=None, last_error=None)
    )
    session.execute(
        update(NotificationOutbox)
        .where(
            NotificationOutbox.subscription_id == due.subscription_id,
            *_pending(),
            NotificationOutbox.next_attempt_s > now_s,
        )
        .values(next_attempt_s=now_s)
    )


def record_failed(session: Session, due: Due, error: str, now_s: int, retry_at_s: int | None) -> bool:
    """A failed attempt: retry at `retry_at_s`, or give up (None) and mark the subscriber failed.

    Returns True if this marked the subscriber failed (it was not marked before), so it is logged once.
    """
    error = error[:255]
    row_update = update(NotificationOutbox).where(NotificationOutbox.id == due.id)
    if retry_at_s is not None:
        session.execute(
            row_update.values(
                attempts=NotificationOutbox.attempts + 1, next_attempt_s=retry_at_s, last_error=error
            )
        )
        return False
    session.execute(
        row_update.values(attempts=NotificationOutbox.attempts + 1, abandoned_s=now_s, last_error=error)
    )
    subscription = session.get(Subscription, due.subscription_id)
    if subscription is None:  # deleted meanwhile
        return False
    newly_failed = subscription.failed_s is None
    subscription.failed_s = subscription.failed_s or now_s
    subscription.last_error = error
    return newly_failed


def prune_outbox(session: Session, before_s: int) -> int:
    """Forget delivered and abandoned notifications older than `before_s`, and cancelled subscriptions
    whose final notification is no longer pending (their outbox rows go with them)."""
    pending_for = select(NotificationOutbox.id).where(
        NotificationOutbox.subscription_id == Subscription.id, *_pending()
    )
    session.execute(delete(Subscription).where(Subscription.cancelled_s.is_not(None), ~pending_for.exists()))
    result = session.execute(
        delete(NotificationOutbox).where(
            NotificationOutbox.created_s < before_s,
            or_(NotificationOutbox.delivered_s.is_not(None), NotificationOutbox.abandoned_s.is_not(None)),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
