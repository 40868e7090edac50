"""Subscriptions cannot make the server reach the inside (issue 11, defect 5).

Notification hosts are resolved and checked when a subscription is made and again at every delivery;
the delivery connects to the address it checked. DNS answers that change are played by a stand-in for
the resolver (`egress.getaddrinfo`), the only part here that is not real: the receiver, the server and
the HTTP between them are. (`egress` is imported where it is used, so the subscription tests also run,
and fail, against a server without it.)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from sqlalchemy import select

from gridshare.core.settings import Settings
from gridshare.store.models import NotificationOutbox, Subscription
from tests.support.bodies import SEP_XML
from tests.support.servers import T0, RunningServer
from tests.support.subscriptions import (
    Pump,
    add_control,
    aggregator_site,
    count,
    subscription_body,
)

INSIDE = [
    "http://localhost:{port}/hook",
    "http://127.1:{port}/hook",
    "http://0x7f000001:{port}/hook",
    "http://2130706433:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://[::127.0.0.1]:{port}/hook",
    "http://[64:ff9b::7f00:1]:{port}/hook",
    "http://[2002:7f00:1::]:{port}/hook",
    "http://0.0.0.0:{port}/hook",
    "http://[::]:{port}/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[fe80::1]/hook",
    "http://169.254.1.1/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.0.10/hook",
    "http://100.64.0.1/hook",
    "http://[fd12:3456::1]/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://no-such-host.invalid/hook",
]


# --- a receiver that records the Host header and can answer with a redirect ------------------------------


@dataclass
class Hook:
    server: ThreadingHTTPServer
    received: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    redirects: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def paths(self) -> list[str]:
        return [p for p, _ in self.received]


@pytest.fixture
def hook() -> Iterator[Hook]:
    box: list[Hook] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            h = box[0]
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path in h.redirects:
                self.send_response(307)
                self.send_header("Location", h.redirects[self.path])
            else:
                h.received.append((self.path, self.headers.get("Host", "")))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Hook(httpd))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield box[0]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def pump(server: RunningServer) -> Iterator[Pump]:
    p = Pump(server.ctx)
    yield p
    p.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Names → the address the resolver answers for them now; other names resolve as usual."""
    from gridshare.server.subscriptions import egress

    answers: dict[str, str] = {}
    real = socket.getaddrinfo

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host in answers:
            ip = answers[host]
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(egress, "getaddrinfo", resolve)
    return answers


def _subscribe(server: RunningServer, site: int, uri: str) -> Any:
    with server.client("aggregator-1") as c:
        return c.post(
            "/edev/0/sub", content=subscription_body(f"/edev/{site}/derp/1/derc", uri), headers=SEP_XML
        )


def _last_error(server: RunningServer) -> str | None:
    with server.ctx.sessions() as s:
        return s.execute(
            select(NotificationOutbox.last_error).order_by(NotificationOutbox.id.desc())
        ).scalar()


# --- tests -----------------------------------------------------------------------------------------------


def test_inside_addresses_are_refused_whatever_their_spelling(server: RunningServer, hook: Hook) -> None:
    server.ctx.settings.notification_allowed_networks = []  # the shipped default: public addresses only
    site = aggregator_site(server)
    for template in [*INSIDE, f"http://127.0.0.1:{hook.port}/hook"]:
        uri = template.format(port=hook.port)
        r = _subscribe(server, site, uri)
        assert r.status_code == 400, (uri, r.status_code, r.text)
        assert "notificationURI" in r.text, r.text
    assert count(server, Subscription) == 0


def test_the_allow_list_admits_a_network_but_never_this_servers_listeners(
    server: RunningServer, hook: Hook
) -> None:
    settings = server.ctx.settings
    site = aggregator_site(server)
    assert _subscribe(server, site, f"http://127.0.0.1:{hook.port}/hook").status_code == 201
    own = [
        f"http://127.0.0.1:{settings.operator_port}/sites",
        f"http://localhost:{settings.operator_port}/sites",
        f"http://127.1:{settings.operator_port}/sites",
        f"http://[::ffff:127.0.0.1]:{settings.operator_port}/sites",
        f"http://0.0.0.0:{settings.operator_port}/sites",
        f"https://127.0.0.1:{settings.port}/edev",
        f"http://127.0.0.2:{hook.port}/hook",  # loopback, but outside the allowed 127.0.0.1/32
    ]
    settings.notification_allowed_networks = [ip_network("127.0.0.1/32"), ip_network("::/0")]
    for uri in own:
        r = _subscribe(server, site, uri)
        assert r.status_code == 400, (uri, r.text)
    settings.notification_allowed_networks = [ip_network("0.0.0.0/0"), ip_network("::/0")]
    assert _subscribe(server, site, "http://169.254.169.254/latest/meta-data/").status_code == 400
    assert count(server, Subscription) == 1


def test_delivery_checks_the_address_again_and_connects_to_the_one_it_checked(
    server: RunningServer, hook: Hook, pump: Pump, dns: dict[str, str]
) -> None:
    site = aggregator_site(server)
    dns["hooks.example.test"] = "127.0.0.1"  # allow-listed by the fixture
    uri = f"http://hooks.example.test:{hook.port}/hook"
    assert _subscribe(server, site, uri).status_code == 201
    assert pump() == 1
    # the name went to the receiver in Host while the connection went to the address that was checked
    assert hook.received == [("/hook", f"hooks.example.test:{hook.port}")]

    for inside in ("10.9.8.7", "169.254.169.254", "::1"):
        dns["hooks.example.test"] = inside  # the subscriber's DNS now points inside
        add_control(server, site, T0 + 600, export_limit_w=1000)
        server.clock.advance(120)  # past any retry backoff
        assert pump() == 0
        error = _last_error(server)
        assert error is not None and error.startswith("refused:") and inside in error, error
    assert len(hook.received) == 1

    dns["hooks.example.test"] = "127.0.0.1"
    server.clock.advance(120)
    assert pump() == 1 and len(hook.received) == 2


def test_redirects_are_never_followed(server: RunningServer, hook: Hook, pump: Pump) -> None:
    site = aggregator_site(server)
    hook.redirects["/hook"] = f"http://127.0.0.1:{server.ctx.settings.operator_port}/sites"
    hook.redirects["/hop"] = f"http://127.0.0.1:{hook.port}/landed"
    for path in ("/hook", "/hop"):
        assert _subscribe(server, site, f"http://127.0.0.1:{hook.port}{path}").status_code == 201
    assert pump() == 0
    assert hook.received == [] and _last_error(server) == "HTTP 307"


@pytest.mark.parametrize(
    ("address", "allowed", "refused_as"),
    [
        ("8.8.8.8", [], None),
        ("2001:4860:4860::8888", [], None),
        ("127.0.0.1", [], "loopback"),
        ("::ffff:127.0.0.1", [], "loopback"),
        ("::ffff:10.0.0.1", [], "private"),
        ("::ffff:8.8.8.8", [], None),
        ("2002:a00:1::", [], "private"),  # 6to4 around 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", [], "private"),  # Teredo around 10.0.0.1
        ("64:ff9b::a9fe:a9fe", [], "metadata"),  # NAT64 around 169.254.169.254
        ("fe80::1", [], "link-local"),
        ("fec0::1", [], "site-local"),
        ("ff02::1", [], "multicast"),
        ("100.64.1.1", [], "not a public"),
        ("192.0.2.1", [], "private"),  # documentation range
        ("10.0.0.1", ["10.0.0.0/8"], None),
        ("::ffff:10.0.0.1", ["10.0.0.0/8"], None),
        ("169.254.169.254", ["169.254.0.0/16"], "metadata"),
    ],
)
def test_address_rules(address: str, allowed: list[str], refused_as: str | None) -> None:
    from gridshare.server.subscriptions import egress

    settings = Settings(notification_allowed_networks=allowed, port=18443, operator_port=18080)
    reason = egress.address_problem(ip_address(address), 443, settings)
    if refused_as is None:
        assert reason is None
    else:
        assert reason is not None and refused_as in reason, reason
