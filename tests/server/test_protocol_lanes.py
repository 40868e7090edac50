"""Polls answered by the device port's HTTP protocol itself (server/guarded_http.py), beside the rest.

A cached poll is answered as soon as its headers are parsed, not through uvicorn's request cycle and
the ASGI front; everything else (reports, which wait for their batch's commit, a poll with
`Connection: close`) still goes the application's way. What a device would notice if that went wrong:
another answer than the application's (bytes, headers), answers out of order on a pipelined
connection, a 201 before the report is stored, or an answer lost. Real mTLS, both databases.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select

from gridshare.store.models import Response as ResponseRow
from gridshare.store.models import TelemetryReading
from tests.support.bodies import meter_reading, response
from tests.support.engine import control_for_site, device_with_everything
from tests.support.servers import T0, RunningServer

MMR = "22" * 16  # the MirrorMeterReading device_with_everything's mirror holds
XML = "application/sep+xml"


def _count(server: RunningServer, table: type) -> int:
    with server.ctx.sessions() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())


@contextmanager
def _connection(server: RunningServer, name: str) -> Iterator[ssl.SSLSocket]:
    port = int(server.base_url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
        server.tls(name).wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        yield sock


def _request(method: str, path: str, body: bytes = b"", close: bool = False) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
    if body:
        head += f"Content-Type: {XML}\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def _answers(sock: ssl.SSLSocket, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """(status, headers, body) of each answer on the connection, in the order they arrive."""
    buffered, answers = b"", []
    for method in methods:
        while b"\r\n\r\n" not in buffered:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before answer {len(answers) + 1} of {len(methods)}"
            buffered += chunk
        head, _, buffered = buffered.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
        length = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
        while len(buffered) < length:
            buffered += sock.recv(65536)
        answers.append((int(status_line.split(" ", 2)[1]), headers, buffered[:length]))
        buffered = buffered[length:]
    return answers


class _Taken:
    """Counts the answers the ASGI front sends itself (a cached body, a report's 201)."""

    def __init__(self, server: RunningServer) -> None:
        assert server.front is not None
        self.front: Any = server.front
        self.asgi = 0
        self._send = send = self.front._send

        async def counting_send(*args: Any, **kwargs: Any) -> None:
            self.asgi += 1
            await send(*args, **kwargs)

        self.front._send = counting_send

    def close(self) -> None:
        self.front._send = self._send


def test_a_poll_answered_by_the_protocol_is_what_the_application_answers(server: RunningServer) -> None:
    site_id, _, _ = device_with_everything(server)
    paths = ["/dcap", f"/edev/{site_id}", f"/edev/{site_id}/fsa", "/tm"]
    with _connection(server, "device-1") as sock:
        sock.sendall(b"".join(_request("GET", p) for p in paths))  # the first of each renders
        rendered = _answers(sock, ["GET"] * len(paths))
        taken = _Taken(server)
        try:
            sock.sendall(b"".join(_request(m, p) for p in paths for m in ("GET", "HEAD")))
            again = _answers(sock, [m for _ in paths for m in ("GET", "HEAD")])
        finally:
            taken.close()
    assert taken.asgi == 0, "a cached poll went through the ASGI front"
    for (status, headers, body), path in zip(rendered, paths, strict=True):
        assert status == 200, path
        for method, (status2, headers2, body2) in zip(("GET", "HEAD"), again[:2], strict=True):
            assert status2 == 200
            assert body2 == (body if method == "GET" else b"")
            # the same headers, Date aside (and Time's body is the same second's)
            assert {k: v for k, v in headers2.items() if k != "date"} == {
                k: v for k, v in headers.items() if k != "date"
            }, (method, path)
        again = again[2:]


def test_a_poll_with_connection_close_is_still_answered_and_closed(server: RunningServer) -> None:
    """Only keep-alive polls take the protocol's lane: a closing one gets uvicorn's close handling."""
    with _connection(server, "device-1") as sock:
        sock.sendall(_request("GET", "/dcap"))
        ((status, _, body),) = _answers(sock, ["GET"])
        sock.sendall(_request("GET", "/dcap", close=True))
        ((status2, headers2, body2),) = _answers(sock, ["GET"])
        assert sock.recv(1) == b""  # closed after the answer
    assert (status, status2, body2) == (200, 200, body)
    assert headers2["connection"] == "close"


def test_reports_and_polls_pipelined_on_one_connection_are_answered_in_order(server: RunningServer) -> None:
    """A report's 201 waits for its batch's commit; the polls sent behind it on the same connection
    must not overtake it, and each report is in the store when its 201 is read."""
    me = server.pki.client("device-1")
    site_id, _, paths = device_with_everything(server)
    mup = next(p for p in paths if p.startswith("/mup/"))
    mrid = control_for_site(server, me.lfdi)
    with _connection(server, "device-1") as sock:
        # first of each: the routes check them and the polls render (the check is remembered)
        warm = [
            _request("POST", mup, meter_reading(MMR, T0 - 120, 1500)),
            _request("POST", "/rsps/1/rsp", response(mrid, me.lfdi, 1, T0)),
            _request("GET", "/dcap"),
            _request("GET", f"/edev/{site_id}"),
        ]
        sock.sendall(b"".join(warm))
        assert [a[0] for a in _answers(sock, ["POST", "POST", "GET", "GET"])] == [201, 201, 200, 200]
        readings, responses = _count(server, TelemetryReading), _count(server, ResponseRow)
        plan = [
            ("POST", mup, meter_reading(MMR, T0 - 60, 1600)),
            ("GET", "/dcap", b""),
            ("POST", "/rsps/1/rsp", response(mrid, me.lfdi, 2, T0 + 1)),
            ("GET", f"/edev/{site_id}", b""),
            ("POST", mup, meter_reading(MMR, T0 - 30, 1700)),
            ("POST", "/rsps/1/rsp", response(mrid, me.lfdi, 3, T0 + 2)),
            ("HEAD", "/dcap", b""),
        ]
        sock.sendall(b"".join(_request(m, p, b) for m, p, b in plan))
        first = _answers(sock, ["POST"])
        stored_by_then = _count(server, TelemetryReading)
        rest = _answers(sock, [m for m, _, _ in plan[1:]])
    answers = first + rest
    assert [a[0] for a in answers] == [201, 200, 201, 200, 201, 201, 200]
    assert stored_by_then >= readings + 1  # committed before its 201 was sent
    assert answers[0][1]["location"] == mup and answers[4][1]["location"] == mup
    assert answers[2][1]["location"].startswith("/rsps/1/rsp/")
    assert answers[2][1]["location"] != answers[5][1]["location"]
    assert b"DeviceCapability" in answers[1][2] and b"EndDevice" in answers[3][2]
    assert (_count(server, TelemetryReading), _count(server, ResponseRow)) == (readings + 2, responses + 2)
    # sent one after another, as a device does, the polls are answered by the protocol and the reports
    # by the front, after their commit
    taken = _Taken(server)
    try:
        with _connection(server, "device-1") as sock:
            for method, path, body in plan:
                sock.sendall(_request(method, path, body))
                assert _answers(sock, [method])[0][0] in (200, 201)
    finally:
        taken.close()
    posts = sum(1 for m, _, _ in plan if m == "POST")
    assert taken.asgi == posts, "a cached poll went through the ASGI front"


def _reporting_mirror(server: RunningServer) -> str:
    """The href of device-1's mirror, its first reading already checked (and remembered) by the route."""
    _, _, paths = device_with_everything(server)
    mup = next(p for p in paths if p.startswith("/mup/"))
    with _connection(server, "device-1") as sock:
        sock.sendall(_request("POST", mup, meter_reading(MMR, T0 - 120, 1500)))
        assert _answers(sock, ["POST"])[0][0] == 201
    return mup


def test_a_report_the_front_cannot_take_is_answered_by_its_route_with_a_reason(server: RunningServer) -> None:
    """A report the front cannot check from memory goes to the application, body and all."""
    mup = _reporting_mirror(server)
    with _connection(server, "device-1") as sock:
        too_old = meter_reading(MMR, T0 - 400 * 86400, 1500)  # dated far outside the accepted window
        wrong = meter_reading(MMR, T0 - 60, 1500).replace(b"<value>1500</value>", b"<value>x</value>")
        sock.sendall(_request("POST", mup, too_old) + _request("POST", mup, wrong) + _request("GET", "/dcap"))
        answers = _answers(sock, ["POST", "POST", "GET"])
    assert [a[0] for a in answers] == [400, 400, 200]
    assert b"MirrorMeterReading" in answers[0][2]  # the route names what it refused
    assert b"valid" in answers[1][2]


def test_a_device_that_hangs_up_before_its_201_still_has_its_report_stored(server: RunningServer) -> None:
    mup = _reporting_mirror(server)
    before = _count(server, TelemetryReading)
    with _connection(server, "device-1") as sock:
        sock.sendall(_request("POST", mup, meter_reading(MMR, T0 - 60, 1600)))
    # its answer had nowhere to go; the report is stored all the same, and the next is served as usual
    deadline = time.monotonic() + 10
    while _count(server, TelemetryReading) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(server, TelemetryReading) == before + 1
    with _connection(server, "device-1") as sock:
        sock.sendall(_request("POST", mup, meter_reading(MMR, T0 - 30, 1700)) + _request("GET", "/dcap"))
        assert [a[0] for a in _answers(sock, ["POST", "GET"])] == [201, 200]
    assert _count(server, TelemetryReading) == before + 2
