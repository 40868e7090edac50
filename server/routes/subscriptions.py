"""SubscriptionList/Subscription: aggregators subscribe to lists and resources they can see.

Only aggregator clients subscribe (design notes §2); a device gets 403 on every /sub path, and no
EndDevice it can see links a SubscriptionList. An aggregator's list is advertised on its own EndDevice
(/edev/0); the lists of its sites' EndDevices work too. POSTing the same subscribedResource and
notificationURI again renews that subscription (same href) instead of adding a second one.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from gridshare.core.settings import Settings
from gridshare.server.shared.paging import Page, page
from gridshare.server.shared.request_unit import (
    Id,
    Unit,
    created,
    read_unit,
    read_xml,
    store_work,
    write_unit,
    xml,
)
from gridshare.server.subscriptions import egress, rules
from gridshare.server.subscriptions.render import render
from gridshare.server.subscriptions.targets import parse
from gridshare.server.wire import decode, encode, hrefs
from gridshare.store.models import Subscription
from gridshare.store.queries import subscriptions as q

router = APIRouter()


def _list_owner(u: Unit, edev_id: Id) -> int | None:
    """The site whose SubscriptionList this is (None: the aggregator's own /edev/0); 403 for devices."""
    if not u.scope.is_aggregator:
        raise HTTPException(403, "subscriptions are for aggregator clients")
    if edev_id == hrefs.AGGREGATOR_EDEV_ID:
        return None
    return u.site(edev_id).id


@router.api_route(hrefs.SUBSCRIPTION_LIST_T.path, methods=["GET", "HEAD"])
def subscription_list(request: Request, edev_id: Id, p: Page = Depends(page)) -> Response:
    with read_unit(request) as u:
        total, subs = q.list_subscriptions(
            u.session, u.scope, _list_owner(u, edev_id), start=p.start, limit=p.limit
        )
        el = encode.list_root("SubscriptionList", hrefs.subscription_list(edev_id), total, len(subs))
        for s in subs:
            encode.subscription(el, s, hrefs.subscription(edev_id, s.id))
        return xml(el)


@router.api_route(hrefs.SUBSCRIPTION_T.path, methods=["GET", "HEAD"])
def subscription(request: Request, edev_id: Id, subscription_id: Id) -> Response:
    with read_unit(request) as u:
        found = q.get_subscription(u.session, u.scope, _list_owner(u, edev_id), subscription_id)
        if found is None:
            raise HTTPException(404, "no such Subscription")
        return xml(encode.subscription(None, found, hrefs.subscription(edev_id, found.id)))


async def _check_destination(uri: str, settings: Settings) -> None:
    """Resolve the notification host off the event loop and refuse inside addresses (server.notify.egress)."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.run_in_executor(None, egress.resolve, uri, settings), settings.notification_timeout_s
        )
    except TimeoutError:
        raise HTTPException(400, "notificationURI host did not resolve in time") from None
    except egress.EgressRefused as exc:
        raise HTTPException(400, str(exc)) from None


@router.post(hrefs.SUBSCRIPTION_LIST_T.path)
async def subscribe(request: Request, edev_id: Id) -> Response:
    body = decode.subscription(await read_xml(request, "Subscription"))
    settings = request.app.state.ctx.settings
    # Store work on worker threads, the notification host's lookup awaited between them: no store round
    # trip and no DNS wait holds up the event loop (or a write transaction).
    await store_work(request, _check_subscriber, edev_id, body, settings)
    await _check_destination(body.notification_uri, settings)
    return await store_work(request, _store_subscription, edev_id, body, settings)


def _check_subscriber(
    request: Request, edev_id: int, body: decode.SubscriptionIn, settings: Settings
) -> None:
    """Refusals that come before the notification host is looked up: who asks, then what is asked."""
    with read_unit(request) as u:
        _list_owner(u, edev_id)
    reason = rules.problem(body, settings)
    if reason is not None:
        raise HTTPException(400, reason)


def _store_subscription(
    request: Request, edev_id: int, body: decode.SubscriptionIn, settings: Settings
) -> Response:
    with write_unit(request) as u:
        owner = _list_owner(u, edev_id)  # again, in this transaction
        target = parse(body.subscribed_resource)
        if target is None:
            raise HTTPException(400, "subscribedResource is not a resource that can be subscribed to")
        # It must exist and be visible to this client now (a resource of another client is simply absent).
        if render(u, target, 0, u.now_s()) is None:
            raise HTTPException(400, "subscribedResource names no resource this client can see")
        now_s = u.now_s()
        found = q.find_renewal(u.session, u.scope, owner, body.subscribed_resource, body.notification_uri)
        if found is None:
            if q.count_for_aggregator(u.session, u.scope) >= settings.max_subscriptions_per_aggregator:
                raise HTTPException(409, "this aggregator has as many subscriptions as it may have")
            found = Subscription(
                aggregator_id=u.scope.aggregator_id,
                site_id=owner,
                resource_href=body.subscribed_resource,
                notification_uri=body.notification_uri,
                created_s=now_s,
            )
            u.session.add(found)
        found.client_lfdi = u.scope.lfdi
        found.result_limit = body.limit
        found.encoding = body.encoding
        found.level = body.level
        found.changed_s = now_s
        # Unset hash: the notifier sends the current representation at once (also after a renewal).
        found.last_sha256 = None
        found.failed_s = None
        found.last_error = None
        u.session.flush()
        return created(hrefs.subscription(edev_id, found.id))


@router.delete(hrefs.SUBSCRIPTION_T.path)
def unsubscribe(request: Request, edev_id: Id, subscription_id: Id) -> Response:
    """Deleting a subscription drops its pending notifications with it (the outbox row cascades)."""
    with write_unit(request) as u:
        found = q.get_subscription(u.session, u.scope, _list_owner(u, edev_id), subscription_id)
        if found is None:
            raise HTTPException(404, "no such Subscription")
        u.session.delete(found)
    return Response(status_code=204)
