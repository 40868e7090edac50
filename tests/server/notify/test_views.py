"""What an operator sees of subscriptions and notifications, and the "caught up" signal harnesses wait on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from gridshare.server.notify.delivery import Delivery
from gridshare.server.notify.notifier import Notifier
from gridshare.server.wire import hrefs
from gridshare.store.queries.subscriptions import prune_outbox
from tests.support.bodies import SEP_XML, der_status
from tests.support.operator_api import OPERATOR, VIEWER, OperatorApi, running_operator_api
from tests.support.servers import T0, RunningServer, xml_ok
from tests.support.subscriptions import (
    NS,
    XSI_TYPE,
    Receiver,
    add_control,
    aggregator_site,
    subscribe,
)


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


def test_deleting_the_subscribed_resource_cancels_the_subscription_with_a_status_4_notification(
    server: RunningServer, receiver: Receiver, api: OperatorApi
) -> None:
    notifier, delivery = Notifier(server.ctx), Delivery(server.ctx)
    try:
        site = aggregator_site(server)
        derc = f"/edev/{site}/derp/1/derc"
        location = subscribe(server, derc, receiver.url("/hook"))
        kept = subscribe(server, "/edev", receiver.url("/list"))
        notifier.scan()
        delivery.deliver_due()
        assert [len(receiver.at(p)) for p in ("/hook", "/list")] == [1, 1]

        with api.client(OPERATOR) as c:
            assert c.delete(f"/sites/{site}").status_code == 204
        notifier.scan()
        delivery.deliver_due()

        final = receiver.at("/hook")[-1].xml()  # Received.xml() validates against the 2030.5 schema
        assert final.findtext("s:status", namespaces=NS) == "4"  # canceled, resource deleted
        assert final.find("s:Resource", NS) is None
        assert final.findtext("s:subscribedResource", namespaces=NS) == derc
        assert final.findtext("s:subscriptionURI", namespaces=NS) == server.base_url + location
        # the EndDeviceList subscription is not cancelled: its list just lost an item
        listed = receiver.at("/list")[-1].xml()
        assert listed.findtext("s:status", namespaces=NS) == "0"

        # gone for the aggregator at once; the EndDeviceList one stays
        with server.client("aggregator-1") as c:
            page = xml_ok(c.get("/edev/0/sub", params={"l": 10}))
            assert c.get(location).status_code == 404
        assert page.get("all") == "1"
        assert [e.findtext("s:subscribedResource", namespaces=NS) for e in page] == ["/edev"]
        assert c_get_ok(server, kept)

        # nothing more is sent for it, and once its last notification is out the row is pruned
        server.clock.advance(60)
        notifier.scan()
        delivery.deliver_due()
        assert len(receiver.at("/hook")) == 2
        with api.client(VIEWER) as c:
            cancelled = [s for s in c.get("/subscriptions").json()["items"] if s["resource_href"] == derc]
        assert cancelled and cancelled[0]["cancelled_s"] is not None
        with server.write() as s:
            prune_outbox(s, before_s=0)
        with api.client(VIEWER) as c:
            hrefs = [s["resource_href"] for s in c.get("/subscriptions").json()["items"]]
        assert hrefs == ["/edev"]
    finally:
        delivery.close()


def c_get_ok(server: RunningServer, location: str) -> bool:
    with server.client("aggregator-1") as c:
        return c.get(location).status_code == 200


def test_a_device_report_reaches_its_subscriber_without_waiting_for_the_rescan(
    server: RunningServer, receiver: Receiver
) -> None:
    """DERStatus is subscribable but moves only the activity counter; the notifier must watch that too."""
    notifier, delivery = Notifier(server.ctx), Delivery(server.ctx)
    try:
        site = aggregator_site(server)
        status_href = hrefs.der_doc(site, 1, "ders")
        with server.client("aggregator-1") as c:  # a document exists once first reported
            assert c.put(status_href, content=der_status(T0), headers=SEP_XML).status_code == 204
        subscribe(server, status_href, receiver.url("/status"))
        notifier.scan()
        delivery.deliver_due()
        first = len(receiver.at("/status"))
        with server.client("aggregator-1") as c:
            assert c.put(status_href, content=der_status(T0 + 30), headers=SEP_XML).status_code == 204
        notifier.scan()  # same second: no rescan is due, only the counter says something changed
        delivery.deliver_due()
        assert len(receiver.at("/status")) == first + 1
        note = receiver.at("/status")[-1].xml()
        assert note.find("s:Resource", NS).get(XSI_TYPE) == "DERStatus"
    finally:
        delivery.close()
