"""Builders for the subscription and notification suites: a loopback receiver of notifications, subscriptions
and controls to notify about, and the notifier pump."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lxml import etree
from sqlalchemy import func, select

from gridshare.certs.identity import sfdi_from_lfdi
from gridshare.core.mrid import new_mrid
from gridshare.server.notify.delivery import Delivery
from gridshare.server.notify.notifier import Notifier
from gridshare.server.shared.context import AppContext
from gridshare.server.wire.xmlio import schema
from gridshare.store.models import DerProgram, Site
from gridshare.store.queries.controls import ControlValues, create_control
from tests.support.bodies import SEP_XML, end_device
from tests.support.servers import RunningServer

DEVICE_LFDI = "A" * 39 + "1"


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes

    def xml(self) -> etree._Element:
        doc = etree.fromstring(self.body)
        assert schema().validate(doc), schema().error_log.last_error
        return doc


NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


@dataclass
class Receiver:
    """Records every POST; a path in `failing` answers 500 instead of 200."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = box[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.attempts[self.path] = rec.attempts.get(self.path, 0) + 1
            if self.path in rec.failing:
                self.send_response(500)
            else:
                rec.received.append(Received(self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(httpd))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        httpd.shutdown()
        httpd.server_close()


class Pump:
    """What the scheduler does every poll: look for changes, then deliver what is due."""

    def __init__(self, ctx: AppContext) -> None:
        self.notifier = Notifier(ctx)
        self.delivery = Delivery(ctx)

    def __call__(self) -> int:
        self.notifier.scan()
        return self.delivery.deliver_due()

    def close(self) -> None:
        self.delivery.close()


def subscription_body(resource: str, uri: str, limit: int = 100, encoding: int = 0) -> bytes:
    return (
        f'<Subscription xmlns="urn:ieee:std:2030.5:ns"><subscribedResource>{resource}</subscribedResource>'
        f"<encoding>{encoding}</encoding><level>+S1</level><limit>{limit}</limit>"
        f"<notificationURI>{uri}</notificationURI></Subscription>"
    ).encode()


def aggregator_site(server: RunningServer, name: str = "aggregator-1", lfdi: str = DEVICE_LFDI) -> int:
    with server.client(name) as c:
        r = c.post("/edev", content=end_device(sfdi_from_lfdi(lfdi), lfdi), headers=SEP_XML)
    assert r.status_code == 201, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def subscribe(server: RunningServer, resource: str, uri: str, name: str = "aggregator-1", **kw: int) -> str:
    with server.client(name) as c:
        r = c.post("/edev/0/sub", content=subscription_body(resource, uri, **kw), headers=SEP_XML)
    assert r.status_code == 201, r.text
    return r.headers["location"]


def add_control(server: RunningServer, site_id: int, start_s: int, **values: float) -> None:
    with server.write() as s:
        program = s.execute(select(DerProgram).order_by(DerProgram.primacy)).scalars().first()
        create_control(
            s,
            site=s.get(Site, site_id),
            program=program,
            mrid=new_mrid(0),
            start_s=start_s,
            duration_s=3600,
            values=ControlValues(**values),
            now_s=int(server.clock.now()),
        )


def controls_in(note: etree._Element) -> list[etree._Element]:
    return note.findall("s:Resource/s:DERControl", NS)


def count(server: RunningServer, model: type) -> int:
    with server.ctx.sessions() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


@pytest.fixture
def pump(server: RunningServer) -> Iterator[Pump]:
    p = Pump(server.ctx)
    yield p
    p.close()
