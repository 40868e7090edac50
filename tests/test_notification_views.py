"""What an operator sees of subscriptions and notifications, and the "caught up" signal harnesses wait on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from server.notify.delivery import Delivery
from server.notify.notifier import Notifier
from tests.conftest import T0, RunningServer
from tests.test_operator_support import OPERATOR, VIEWER, OperatorApi, running_operator_api
from tests.test_subscriptions import Receiver, add_control, aggregator_site, receiver, subscribe

__all__ = ["receiver"]  # the fixture, imported for its side effect of being available here


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as a:
        yield a


def status(api: OperatorApi) -> dict[str, object]:
    with api.client(VIEWER) as c:
        r = c.get("/notifications/status")
    assert r.status_code == 200, r.text
    return r.json()


def test_operator_sees_subscribers_their_notifications_and_when_the_notifier_caught_up(
    server: RunningServer, receiver: Receiver, api: OperatorApi
) -> None:
    settings = server.ctx.settings.model_copy(
        update={"notification_max_attempts": 2, "notification_retry_base_s": 30}
    )
    ctx = dataclasses.replace(server.ctx, settings=settings)
    notifier, delivery = Notifier(ctx), Delivery(ctx)
    try:
        site = aggregator_site(server)
        derc = f"/edev/{site}/derp/1/derc"
        receiver.failing.add("/bad")
        subscribe(server, derc, receiver.url("/good"))
        subscribe(server, derc, receiver.url("/bad"))

        # the subscriptions are new: nothing scanned yet, so not caught up
        assert status(api)["caught_up"] is False
        notifier.scan()
        queued = status(api)
        assert (queued["caught_up"], queued["pending"], queued["in_progress"]) == (False, 2, 2)
        delivery.deliver_due()
        after = status(api)
        # /good got its notification; /bad failed once and waits 30 s: nothing is about to be sent
        assert after["caught_up"] is True
        assert (after["pending"], after["waiting_retry"], after["failed_subscriptions"]) == (1, 1, 0)

        # an operator-visible change: not caught up until the notifier has scanned it
        add_control(server, site, T0 + 600, export_limit_w=2500)
        assert status(api)["caught_up"] is False
        notifier.scan()
        delivery.deliver_due()
        assert status(api)["caught_up"] is True
        assert len(receiver.at("/good")) == 2

        server.clock.advance(60)
        delivery.deliver_due()  # the second and last attempt for /bad
        with api.client(VIEWER) as c:
            listed = c.get("/subscriptions").json()
            failed = c.get("/subscriptions", params={"failed": "true"}).json()
            [bad] = failed["items"]
            sent = c.get(f"/subscriptions/{bad['id']}/notifications").json()
            good = next(s for s in listed["items"] if s["notification_uri"].endswith("/good"))
        assert listed["total"] == 2 and failed["total"] == 1
        assert bad["notification_uri"] == receiver.url("/bad") and bad["last_error"] == "HTTP 500"
        assert bad["failed_s"] is not None and good["failed_s"] is None
        assert good["last_delivered_s"] is not None and good["pending"] == 0
        assert bad["resource_href"] == derc
        # newest first: the one with the 2500 W control, abandoned after two attempts
        newest = sent["items"][0]
        assert newest["abandoned_s"] is not None and newest["attempts"] == 2
        assert "<value>2500</value>" in newest["body"]
        assert sent["items"][-1]["last_error"] == "superseded by a newer notification"

        # dropping the failing subscriber: audited, and it gets nothing more
        before = api.audit_count()
        with api.client(VIEWER) as c:
            assert c.delete(f"/subscriptions/{bad['id']}").status_code == 403
        with api.client(OPERATOR) as c:
            assert c.delete(f"/subscriptions/{bad['id']}").status_code == 204
            assert c.get(f"/subscriptions/{bad['id']}").status_code == 404
            assert c.delete(f"/subscriptions/{bad['id']}").status_code == 404
        assert api.audit_count() == before + 1
        receiver.failing.clear()
        attempts_before = receiver.attempts["/bad"]
        add_control(server, site, T0 + 7200, export_limit_w=1000)
        notifier.scan()
        delivery.deliver_due()
        assert receiver.attempts["/bad"] == attempts_before
        assert len(receiver.at("/good")) == 3
        assert status(api)["failed_subscriptions"] == 0
    finally:
        delivery.close()
