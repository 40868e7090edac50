"""What operators see of subscriptions and the notification outbox, and how far the notifier has got.

Read-only views for the operator API (all aggregators at once, unlike the scoped queries in
store.queries.subscriptions), plus the notifier's progress mark: the change counters it has finished
scanning. Together they answer "has every change so far been turned into notifications, and have
those been sent?", which a test harness can wait on instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gridshare.store.change_feed import ENVELOPES, SITES, change_versions
from gridshare.store.db import activity_value, publication_value
from gridshare.store.models import NotificationOutbox, Subscription
from gridshare.store.runtime_settings import ServerSetting

#: server_setting key holding the change counters the notifier last finished scanning.
SEEN_KEY = "notify.seen"
#: Where the activity counter sits in `change_marks`: devices' own reports move it and nothing else.
ACTIVITY_MARK = 1


def change_marks(session: Session) -> list[int]:
    """The counters a notifier scans changes up to: the publication counter; the activity counter
    (devices' reports); `envelopes` (every envelope publication); `sites` (devices' registrations and
    NMI bindings, which bump their owner's key and nothing wider)."""
    keyed = change_versions(session, [ENVELOPES, SITES])
    return [publication_value(session), activity_value(session), keyed[ENVELOPES], keyed[SITES]]


def only_reports_moved(before: list[int], now: list[int]) -> bool:
    """Whether nothing but the activity counter differs between two `change_marks`."""
    return len(before) == len(now) and all(
        a == b for i, (a, b) in enumerate(zip(before, now, strict=True)) if i != ACTIVITY_MARK
    )


@dataclass(frozen=True)
class SubscriptionView:
    subscription: Subscription
    pending: int
    last_delivered_s: int | None


def _pending() -> Any:
    return and_(NotificationOutbox.delivered_s.is_(None), NotificationOutbox.abandoned_s.is_(None))


def subscriptions_page(
    session: Session, *, aggregator_id: int | None, failed_only: bool, start: int, limit: int
) -> tuple[int, list[SubscriptionView]]:
    """Subscriptions oldest first, each with its pending notifications and last delivery time."""
    where = []
    if aggregator_id is not None:
        where.append(Subscription.aggregator_id == aggregator_id)
    if failed_only:
        where.append(Subscription.failed_s.is_not(None))
    total = session.execute(select(func.count(Subscription.id)).where(*where)).scalar_one()
    rows = (
        session.execute(
            select(Subscription).where(*where).order_by(Subscription.id).offset(start).limit(limit)
        )
        .scalars()
        .all()
    )
    return int(total), [_view(session, s) for s in rows]


def subscription_view(session: Session, subscription_id: int) -> SubscriptionView | None:
    s = session.get(Subscription, subscription_id)
    return None if s is None else _view(session, s)


def _view(session: Session, s: Subscription) -> SubscriptionView:
    pending = session.execute(
        select(func.count(NotificationOutbox.id)).where(
            NotificationOutbox.subscription_id == s.id, _pending()
        )
    ).scalar_one()
    last = session.execute(
        select(func.max(NotificationOutbox.delivered_s)).where(NotificationOutbox.subscription_id == s.id)
    ).scalar_one()
    return SubscriptionView(s, int(pending), None if last is None else int(last))


def outbox_page(
    session: Session, subscription_id: int, *, start: int, limit: int
) -> tuple[int, list[NotificationOutbox]]:
    """One subscription's notifications, newest first (delivered and abandoned ones are kept a week)."""
    where = NotificationOutbox.subscription_id == subscription_id
    total = session.execute(select(func.count(NotificationOutbox.id)).where(where)).scalar_one()
    rows = (
        session.execute(
            select(NotificationOutbox)
            .where(where)
            .order_by(NotificationOutbox.id.desc())
            .offset(start)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    return int(total), list(rows)


@dataclass(frozen=True)
class OutboxSummary:
    pending: int  # not yet delivered nor abandoned
    in_progress: int  # of those, not yet attempted or due now: delivery is about to happen
    waiting_retry: int  # of those, failed at least once and waiting for their next attempt
    failed_subscriptions: int


def outbox_summary(session: Session, now_s: int) -> OutboxSummary:
    pending = session.execute(select(func.count(NotificationOutbox.id)).where(_pending())).scalar_one()
    in_progress = session.execute(
        select(func.count(NotificationOutbox.id)).where(
            _pending(),
            or_(NotificationOutbox.attempts == 0, NotificationOutbox.next_attempt_s <= now_s),
        )
    ).scalar_one()
    failed = session.execute(
        select(func.count(Subscription.id)).where(Subscription.failed_s.is_not(None))
    ).scalar_one()
    return OutboxSummary(int(pending), int(in_progress), int(pending) - int(in_progress), int(failed))


def record_seen(session: Session, marks: list[int], now_s: int) -> None:
    """A notifier finished scanning every change up to these counters (nothing else reads this).

    Safe with two notifiers on one database: the row is created at most once (insert-or-nothing), and
    the mark only moves forward, so a slower scan of older counters does not undo a newer one.
    """
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(ServerSetting)
        .values(key=SEEN_KEY, value=list(marks), changed_s=now_s)
        .on_conflict_do_nothing(index_elements=[ServerSetting.key])
    )
    row = session.get(ServerSetting, SEEN_KEY, with_for_update=True, populate_existing=True)
    if row is None:  # pragma: no cover - inserted just above
        return
    old = [int(v) for v in row.value]
    new = [max(a, b) for a, b in zip(old, marks, strict=True)] if len(old) == len(marks) else list(marks)
    if new != old:
        row.value, row.changed_s = new, now_s


def seen(session: Session) -> list[int] | None:
    row = session.get(ServerSetting, SEEN_KEY)
    return None if row is None else [int(v) for v in row.value]
