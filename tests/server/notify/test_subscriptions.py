"""Subscriptions and Notifications: aggregators subscribe, changes reach a real HTTP receiver, durably.

The notifier and the delivery worker are called directly where the scheduler of `gridshare serve` would
call them, and time moves on the server fixture's clock, so retries and backoff need no sleeping.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from sqlalchemy import select

from gridshare.core.mrid import new_mrid
from gridshare.server.notify.delivery import Delivery
from gridshare.server.notify.notifier import Notifier
from gridshare.server.shared.context import build_context
from gridshare.store.models import DerProgram, NotificationOutbox, Subscription
from gridshare.store.queries.controls import ControlValues, set_default_control
from tests.support.bodies import SEP_XML, connection_point, der_status
from tests.support.servers import T0, RunningServer, xml_ok
from tests.support.subscriptions import (
    NS,
    XSI_TYPE,
    Pump,
    Receiver,
    add_control,
    aggregator_site,
    controls_in,
    count,
    subscribe,
    subscription_body,
)

# --- a notification receiver: real HTTP on loopback -----------------------------------------------------


# --- helpers ---------------------------------------------------------------------------------------------


# --- tests -----------------------------------------------------------------------------------------------


def test_aggregator_finds_one_subscription_list_and_subscribable_lists(server: RunningServer) -> None:
    site = aggregator_site(server)
    with server.client("aggregator-1") as c:
        edevs = xml_ok(c.get("/edev", params={"l": 10}))
        assert edevs.get("subscribable") == "1"
        links = {e.get("href"): e.find("s:SubscriptionListLink", NS) for e in edevs}
        assert links[f"/edev/{site}"] is None  # cactus-client wants exactly one SubscriptionList
        assert links["/edev/0"].get("href") == "/edev/0/sub"
        listing = xml_ok(c.get("/edev/0/sub"))
        assert (listing.get("all"), listing.get("results")) == ("0", "0")
        assert xml_ok(c.get(f"/edev/{site}/fsa")).get("subscribable") == "1"
        assert xml_ok(c.get(f"/edev/{site}/fsa/1/derp")).get("subscribable") == "1"
        assert xml_ok(c.get(f"/edev/{site}/derp/1/derc")).get("subscribable") == "1"
        assert xml_ok(c.get(f"/edev/{site}/derp/1/dderc")).get("subscribable") == "1"


def test_control_list_subscription_notifies_changes(
    server: RunningServer, receiver: Receiver, pump: Pump
) -> None:
    site = aggregator_site(server)
    derc = f"/edev/{site}/derp/1/derc"
    location = subscribe(server, derc, receiver.url("/hook"), limit=1)
    with server.client("aggregator-1") as c:
        sub = xml_ok(c.get(location))
    assert sub.findtext("s:subscribedResource", namespaces=NS) == derc
    assert sub.findtext("s:notificationURI", namespaces=NS) == receiver.url("/hook")
    assert (sub.findtext("s:limit", namespaces=NS), sub.findtext("s:level", namespaces=NS)) == ("1", "+S1")

    assert pump() == 1  # the current representation right after subscribing
    first = receiver.at("/hook")[0].xml()
    assert first.find("s:Resource", NS).get("all") == "0"
    assert pump() == 0  # nothing changed, nothing sent

    add_control(server, site, T0 + 600, export_limit_w=2000)  # an operator-style change
    assert pump() == 1
    got = receiver.at("/hook")[-1]
    assert got.content_type == "application/sep+xml"
    note = got.xml()
    assert note.findtext("s:subscribedResource", namespaces=NS) == derc
    assert note.findtext("s:status", namespaces=NS) == "0"
    assert note.findtext("s:subscriptionURI", namespaces=NS) == server.base_url + location
    resource = note.find("s:Resource", NS)
    assert resource.get(XSI_TYPE) == "DERControlList"
    assert resource.get("href") == derc
    [control] = controls_in(note)
    assert control.findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "0"  # scheduled
    assert control.findtext("s:DERControlBase/c:opModExpLimW/s:value", namespaces=NS) == "2000"

    # a second control: limit 1 sends one item, but all= tells the list grew
    add_control(server, site, T0 + 7200, export_limit_w=1000)
    assert pump() == 1
    resource = receiver.at("/hook")[-1].xml().find("s:Resource", NS)
    assert (resource.get("all"), resource.get("results")) == ("2", "1")

    # no write at all: the first control becomes active with time, a rescan notices
    server.clock.advance(600)
    assert pump() == 1
    [control] = controls_in(receiver.at("/hook")[-1].xml())
    assert control.findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "1"  # active


def test_renewal_updates_and_delete_stops_notifications(
    server: RunningServer, receiver: Receiver, pump: Pump
) -> None:
    site = aggregator_site(server)
    derc = f"/edev/{site}/derp/1/derc"
    location = subscribe(server, derc, receiver.url("/hook"))
    assert subscribe(server, derc, receiver.url("/hook"), limit=5) == location  # renewal, not a copy
    other = subscribe(server, derc, receiver.url("/other"))  # another endpoint is another subscription
    assert other != location
    with server.client("aggregator-1") as c:
        listing = xml_ok(c.get("/edev/0/sub", params={"l": 10}))
        assert listing.get("all") == "2"
        assert xml_ok(c.get(location)).findtext("s:limit", namespaces=NS) == "5"
        assert c.delete(location).status_code == 204
        assert c.get(location).status_code == 404
        assert c.delete(location).status_code == 404
        assert xml_ok(c.get("/edev/0/sub")).get("all") == "1"
    pump()
    add_control(server, site, T0 + 600, export_limit_w=1500)
    pump()
    assert receiver.at("/hook") == []
    assert len(receiver.at("/other")) == 2


def test_failing_subscriber_is_retried_then_marked_while_others_are_served(
    server: RunningServer, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    settings = server.ctx.settings.model_copy(
        update={
            "notification_max_attempts": 3,
            "notification_retry_base_s": 10,
            "notification_retry_max_s": 15,
        }
    )
    pump = Pump(dataclasses.replace(server.ctx, settings=settings))
    try:
        site = aggregator_site(server)
        derc = f"/edev/{site}/derp/1/derc"
        receiver.failing.add("/bad")
        subscribe(server, derc, receiver.url("/bad"))
        subscribe(server, derc, receiver.url("/good"))
        assert pump() == 1
        assert (receiver.attempts["/bad"], len(receiver.at("/good"))) == (1, 1)
        assert pump() == 0  # not due yet: the next attempt waits 10 s
        assert receiver.attempts["/bad"] == 1
        server.clock.advance(10)
        pump()
        assert receiver.attempts["/bad"] == 2
        server.clock.advance(10)
        pump()
        assert receiver.attempts["/bad"] == 2  # backoff doubled to 20 s, capped at 15 s
        with caplog.at_level(logging.WARNING, logger="gridshare.notify"):
            server.clock.advance(5)
            pump()
        assert receiver.attempts["/bad"] == 3
        assert "marked failed" in caplog.text and receiver.url("/bad") in caplog.text
        with server.ctx.sessions() as s:
            bad = s.execute(
                select(Subscription).where(Subscription.notification_uri.endswith("/bad"))
            ).scalar_one()
            assert bad.failed_s is not None and bad.last_error == "HTTP 500"
        server.clock.advance(600)
        pump()
        assert receiver.attempts["/bad"] == 3  # given up: no more attempts for that notification

        # a new change: the good one is served, the failed one gets a single try
        add_control(server, site, T0 + 7200, export_limit_w=1000)
        pump()
        assert len(receiver.at("/good")) == 2
        assert receiver.attempts["/bad"] == 4
        server.clock.advance(600)
        pump()
        assert receiver.attempts["/bad"] == 4

        # the endpoint recovers: the next change is delivered and the mark is cleared
        receiver.failing.clear()
        add_control(server, site, T0 + 9000, export_limit_w=900)
        pump()
        assert len(receiver.at("/bad")) == 1
        with server.ctx.sessions() as s:
            assert s.get(Subscription, bad.id).failed_s is None
    finally:
        pump.close()


def test_pending_notifications_survive_a_restart(server: RunningServer, receiver: Receiver) -> None:
    site = aggregator_site(server)
    subscribe(server, f"/edev/{site}/derp/1/derc", receiver.url("/hook"))
    assert Notifier(server.ctx).scan() == 1  # queued in the store, not sent: the server stops here
    assert receiver.received == []

    restarted = build_context(server.ctx.settings, server.clock)  # a new process: new engine, same database
    delivery = Delivery(restarted)
    try:
        assert Notifier(restarted).scan() == 0  # what was queued is remembered, nothing is queued twice
        assert delivery.deliver_due() == 1
        assert len(receiver.at("/hook")) == 1
        assert delivery.deliver_due() == 0
    finally:
        delivery.close()
        restarted.engine.dispose()


def test_device_cannot_subscribe(server: RunningServer, receiver: Receiver) -> None:
    own = server.register("device-1")
    with server.client("device-1") as c:
        assert xml_ok(c.get(own)).find("s:SubscriptionListLink", NS) is None
        body = subscription_body(f"{own}/derp/1/derc", receiver.url("/hook"))
        assert c.post(f"{own}/sub", content=body, headers=SEP_XML).status_code == 403
        assert c.post("/edev/0/sub", content=body, headers=SEP_XML).status_code == 403
        assert c.get(f"{own}/sub").status_code == 403
    assert count(server, Subscription) == 0


def test_bad_subscriptions_are_refused_and_store_nothing(server: RunningServer, receiver: Receiver) -> None:
    site = aggregator_site(server)
    foreign = aggregator_site(server, "aggregator-2", "B" * 39 + "2")
    good_uri, derc = receiver.url("/hook"), f"/edev/{site}/derp/1/derc"
    bad = [
        subscription_body("/tm", good_uri),  # not subscribable
        subscription_body("/edev/999/derp/1/derc", good_uri),  # no such EndDevice
        subscription_body(f"/edev/{site}/derp/99/derc", good_uri),  # no such program
        subscription_body(f"/edev/{foreign}/derp/1/derc", good_uri),  # another aggregator's device
        subscription_body(derc, "ftp://127.0.0.1/hook"),
        subscription_body(derc, "/relative/hook"),
        subscription_body(derc, "http://user:secret@127.0.0.1/hook"),
        subscription_body(derc, good_uri, encoding=1),  # EXI
        subscription_body(derc, good_uri).replace(b"<level>+S1</level>", b""),  # not schema-valid
    ]
    with server.client("aggregator-1") as c:
        for body in bad:
            r = c.post("/edev/0/sub", content=body, headers=SEP_XML)
            assert r.status_code == 400, (body, r.text)
        assert (
            c.post(
                f"/edev/{foreign}/sub", content=subscription_body(derc, good_uri), headers=SEP_XML
            ).status_code
            == 404
        )
        assert xml_ok(c.get("/edev/0/sub")).get("all") == "0"
    assert count(server, Subscription) == 0


def test_list_and_default_control_notifications(
    server: RunningServer, receiver: Receiver, pump: Pump
) -> None:
    site = aggregator_site(server)
    subscribe(server, "/edev", receiver.url("/edev"))
    subscribe(server, f"/edev/{site}/derp/1/dderc", receiver.url("/dderc"))
    pump()
    aggregator_site(server, lfdi="C" * 39 + "3")  # the aggregator registers another device
    with server.write() as s:
        program = s.execute(select(DerProgram).order_by(DerProgram.primacy)).scalars().first()
        set_default_control(
            s,
            program=program,
            site=None,
            mrid=new_mrid(0),
            values=ControlValues(export_limit_w=2000),
            now_s=int(server.clock.now()),
            set_grad_w_hundredths=100,
        )
    pump()
    edevs = receiver.at("/edev")[-1].xml().find("s:Resource", NS)
    assert edevs.get(XSI_TYPE) == "EndDeviceList"
    assert edevs[0].get("href") == "/edev/0"
    assert (edevs.get("all"), len(edevs)) == ("3", 3)
    dderc = receiver.at("/dderc")[-1].xml().find("s:Resource", NS)
    assert dderc.get(XSI_TYPE) == "DefaultDERControl"
    assert dderc.findtext("s:DERControlBase/c:opModExpLimW/s:value", namespaces=NS) == "2000"
    assert dderc.findtext("s:setGradW", namespaces=NS) == "100"
    assert count(server, NotificationOutbox) == 4


def test_a_registration_and_an_nmi_binding_alone_notify_the_end_device_list(
    server: RunningServer, receiver: Receiver, pump: Pump
) -> None:
    """Registering a device and binding its NMI publish nothing (they bump the aggregator's own change
    key and SITES); a subscriber to the EndDeviceList still hears of each at once, not at the rescan."""
    aggregator_site(server)
    subscribe(server, "/edev", receiver.url("/edev"))
    assert pump() == 1  # the list as it is right after subscribing
    assert pump() == 0
    site = aggregator_site(server, lfdi="C" * 39 + "3")
    assert pump() == 1
    edevs = receiver.at("/edev")[-1].xml().find("s:Resource", NS)
    assert (edevs.get("all"), len(edevs)) == ("3", 3)
    server.clock.advance(1)  # well inside the rescan interval: only the binding can trigger a scan
    with server.client("aggregator-1") as c:
        r = c.put(f"/edev/{site}/cp", content=connection_point("4102345678"), headers=SEP_XML)
    assert r.status_code == 204, r.text
    assert pump() == 1  # the device's changedTime moved with its binding
    assert pump() == 0


def test_device_reports_notify_der_documents_and_never_postpone_the_timed_rescan(
    server: RunningServer, receiver: Receiver, pump: Pump
) -> None:
    """Telemetry and DER document reports arrive all the time; they re-render only what they can change
    (DER documents), and the periodic rescan that notices controls starting still happens on time."""
    site = aggregator_site(server)
    ders = f"/edev/{site}/der/1/ders"
    with server.client("aggregator-1") as c:
        assert c.put(ders, content=der_status(T0), headers=SEP_XML).status_code == 204
    add_control(server, site, T0 + 600, export_limit_w=2000)
    subscribe(server, ders, receiver.url("/ders"))
    subscribe(server, f"/edev/{site}/derp/1/derc", receiver.url("/derc"))
    assert pump() == 2  # each resource as it is right after subscribing
    assert pump() == 0

    with server.client("aggregator-1") as c:  # a device report: the DER document changed, nothing else
        assert c.put(ders, content=der_status(T0 + 30), headers=SEP_XML).status_code == 204
    assert pump() == 1
    status = receiver.at("/ders")[-1].xml().find("s:Resource", NS)
    assert status.get(XSI_TYPE) == "DERStatus" and status.findtext("s:readingTime", namespaces=NS) == str(
        T0 + 30
    )

    # the control starts with time alone while reports keep coming: the rescan still sees it
    server.clock.advance(600)
    with server.client("aggregator-1") as c:
        assert c.put(ders, content=der_status(T0 + 630), headers=SEP_XML).status_code == 204
    assert pump() == 2
    [control] = controls_in(receiver.at("/derc")[-1].xml())
    assert control.findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "1"  # active
    assert receiver.at("/ders")[-1].xml().find("s:Resource/s:readingTime", NS).text == str(T0 + 630)
