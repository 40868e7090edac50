"""Change detection: re-render what each subscriber sees; queue a Notification when it differs.

No writer has to call anything: every client-visible write bumps the publication counter (a device's
own reports bump the activity counter), so a scan runs when either moved (at most once per poll) and
also every `notification_rescan_s`, because a DERControl's status changes with the clock alone. The
hash of what was last queued is kept on the subscription, so a restart sends nothing twice. A
subscriber whose certificate is revoked gets nothing.
A subscribed resource that is gone (deleted, or no longer visible to the subscriber) cancels the
subscription with a final Notification of status 4, "Subscription canceled, resource deleted"
(IEEE 2030.5-2018 schema, Notification.status).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass

from lxml import etree
from sqlalchemy.orm import Session

from gridshare.server.shared.context import AppContext
from gridshare.server.shared.request_unit import Unit
from gridshare.server.subscriptions.render import render
from gridshare.server.subscriptions.targets import Kind, Target, parse
from gridshare.server.wire import encode, hrefs
from gridshare.server.wire.xmlio import MEDIA_TYPE, to_bytes
from gridshare.store.db import transaction
from gridshare.store.models import ClientKind, Subscription
from gridshare.store.queries import subscriptions as q
from gridshare.store.queries.identity import certificate_by_lfdi
from gridshare.store.queries.notification_views import change_marks, only_reports_moved, record_seen
from gridshare.store.scope import ClientScope

log = logging.getLogger("gridshare.notify")


def base_url(ctx: AppContext) -> str:
    """Absolute prefix for subscriptionURI (2030.5 wants it absolute): `public_base_url` or our listener."""
    settings = ctx.settings
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    scheme = "http" if settings.behind_proxy else "https"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{scheme}://{host}:{settings.port}"


def subscription_href(s: Subscription) -> str:
    return hrefs.subscription(hrefs.AGGREGATOR_EDEV_ID if s.site_id is None else s.site_id, s.id)


#: Notification.status "Subscription canceled, resource deleted" (IEEE 2030.5-2018 schema, Notification).
STATUS_CANCELLED_RESOURCE_DELETED = 4
#: What a device's own reports (the writes that move only the activity counter: telemetry and mirrors,
#: Responses, LogEvents, DER documents; server/shared/request_unit.py `write_unit`) can change among
#: subscribable resources.
REPORT_KINDS = frozenset(
    {
        Kind.der_document,
        Kind.usage_point_list,
        Kind.meter_reading_list,
        Kind.reading_set_list,
        Kind.reading_list,
        Kind.latest_reading,
    }
)
#: last_sha256 of a subscription cancelled because its resource went away.
_GONE = "resource deleted"


@dataclass(frozen=True)
class _Change:
    subscription_id: int
    seen_sha256: str | None
    sha256: str
    body: str
    cancels: bool = False


class Notifier:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._marks: list[int] | None = None
        self._rescan_at_s = 0

    def scan(self) -> int:
        """Queue a Notification for each subscription whose resource changed; returns how many were queued."""
        with self.ctx.sessions() as session:
            marks = change_marks(session)
            generation = marks[0]
            now_s = self.ctx.now_s()
            rescan_due = now_s >= self._rescan_at_s
            if marks == self._marks and not rescan_due:
                return 0
            # Only devices' own reports moved: of what can be subscribed to, they can change nothing but
            # DER documents and metering views, so the (many) program and control list subscriptions are
            # not re-rendered for every telemetry post.
            reports_only = (
                not rescan_due and self._marks is not None and only_reports_moved(self._marks, marks)
            )
            changes = self._changes(session, generation, REPORT_KINDS if reports_only else None)
        queued = sum(self._queue(change, now_s) for change in changes)
        if marks != self._marks:
            # Only after queueing: whoever waits on this mark then finds the notifications in the outbox.
            with transaction(self.ctx.sessions) as session:
                record_seen(session, marks, now_s)
        self._marks = marks
        if not reports_only:  # a partial scan does not stand in for the time-driven full one
            self._rescan_at_s = now_s + self.ctx.settings.notification_rescan_s
        if queued:
            log.info("queued %d notification(s)", queued)
        return queued

    def _changes(
        self, session: Session, generation: int, only: frozenset[Kind] | None = None
    ) -> list[_Change]:
        """What changed for each subscription (of the kinds in `only`, if given) since it was last queued."""
        cap = self.ctx.settings.list_limit_cap
        prefix = base_url(self.ctx)
        clients: dict[str, tuple[ClientScope, int] | None] = {}
        rendered: dict[tuple[object, ...], etree._Element | None] = {}
        changes: list[_Change] = []
        for s in q.all_subscriptions(session):
            target = parse(s.resource_href)
            if target is None or (only is not None and target.kind not in only):
                continue
            if s.client_lfdi not in clients:
                clients[s.client_lfdi] = _aggregator(session, s.client_lfdi)
            client = clients[s.client_lfdi]
            if client is None or client[0].aggregator_id != s.aggregator_id:
                continue
            scope, since_s = client
            unit = Unit(self.ctx, session, scope, generation)
            limit = min(s.result_limit, cap)
            # Compare on the full page, so a change beyond a `limit` of 0 is still a change.
            full = _render_once(rendered, unit, target, limit or cap, since_s)
            if full is None:
                note = encode.notification(
                    s.resource_href, prefix + subscription_href(s), None, STATUS_CANCELLED_RESOURCE_DELETED
                )
                changes.append(_Change(s.id, s.last_sha256, _GONE, to_bytes(note).decode(), cancels=True))
                continue
            digest = hashlib.sha256(to_bytes(full)).hexdigest()
            if digest == s.last_sha256:
                continue
            if limit > 0:
                resource: etree._Element | None = full
            else:  # 2030.5 Subscription.limit 0: a list with results=0, or no representation at all
                resource = _render_once(rendered, unit, target, 0, since_s) if target.kind.is_list else None
            note = encode.notification(
                s.resource_href,
                prefix + subscription_href(s),
                None if resource is None else copy.deepcopy(resource),
            )
            changes.append(_Change(s.id, s.last_sha256, digest, to_bytes(note).decode()))
        return changes

    def _queue(self, change: _Change, now_s: int) -> int:
        """Queue one change unless the subscription went away or another notifier queued it first."""
        with transaction(self.ctx.sessions) as session:
            if not q.mark_queued(session, change.subscription_id, change.seen_sha256, change.sha256):
                return 0
            subscription = session.get(Subscription, change.subscription_id)
            if subscription is None:
                return 0
            if change.cancels:
                subscription.cancelled_s = now_s
                log.info(
                    "subscription %d to %s cancelled: the resource is gone",
                    subscription.id,
                    subscription.resource_href,
                )
            q.enqueue(
                session,
                subscription,
                body=change.body,
                content_type=MEDIA_TYPE,
                now_s=now_s,
                max_attempts=self.ctx.settings.notification_max_attempts,
            )
            log.debug("notification queued for subscription %d", change.subscription_id)
            return 1


def _render_once(
    cache: dict[tuple[object, ...], etree._Element | None],
    unit: Unit,
    target: Target,
    limit: int,
    since_s: int,
) -> etree._Element | None:
    """Render once per scan for everyone who subscribed to the same thing through the same certificate."""
    key = (unit.scope.lfdi, target, limit)
    if key not in cache:
        cache[key] = render(unit, target, limit, since_s)
    return cache[key]


def _aggregator(session: Session, lfdi: str) -> tuple[ClientScope, int] | None:
    """The subscriber's scope and registration time, or None if its certificate is revoked or unknown."""
    cert = certificate_by_lfdi(session, lfdi)
    if cert is None or cert.revoked_s is not None or cert.kind is not ClientKind.aggregator:
        return None
    return ClientScope(ClientKind.aggregator, cert.lfdi, cert.sfdi, cert.aggregator_id), cert.created_s
