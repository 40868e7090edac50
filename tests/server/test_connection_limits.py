"""Slow and greedy clients on the device port (issue 11, defect 6): deadlines, caps, quiet hang-ups.

Each test talks raw HTTP/1.1 over a socket (mutual TLS, or plain HTTP as behind a TLS-terminating
proxy) to a server started as `gridshare serve` builds it, with short timeouts. Before these limits
a client that sent headers and then nothing, or promised a body it never sent, held its connection
forever, any number of connections per client were accepted, and a client hanging up mid-body made
uvicorn log "Exception in ASGI application" with a full traceback.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridshare.certs.devpki import DevPki
from gridshare.core.settings import Settings
from gridshare.server.connection_limits import (
    UNCOUNTED,
    ConnectionCounter,
    ConnectionLimits,
    client_key,
)
from tests.support.servers import RunningServer, running_server

GET = b"GET /dcap HTTP/1.1\r\nHost: localhost\r\n\r\n"
#: Where a late answer would land: well past the 1 s deadlines, well short of "forever".
LATE_S = 6.0

MODES = ["mtls", pytest.param("proxy", id="behind_proxy")]


@pytest.fixture
def serve(pki: DevPki, database_url: str, tmp_path: Path) -> Iterator[Any]:
    """Start servers with these settings (in "proxy" mode: plain HTTP, 127.0.0.1 a trusted proxy)."""
    stack: list[Any] = []

    def start(mode: str = "mtls", **overrides: Any) -> RunningServer:
        if mode == "proxy":
            overrides = {"behind_proxy": True, "trusted_proxies": ["127.0.0.1/32"], **overrides}
        manager = running_server(pki, database_url, tmp_path / f"s{len(stack)}", **overrides)
        running = manager.__enter__()
        stack.append(manager)
        return running

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


def _connect(server: RunningServer, name: str = "device-1") -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1])), timeout=LATE_S)
    if server.base_url.startswith("http://"):
        return raw
    return server.tls(name).wrap_socket(raw, server_hostname="localhost")


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed after {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def _until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took (raises if it never does)."""
    started = time.monotonic()
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ssl.SSLEOFError, ConnectionResetError):
        pass
    return data, time.monotonic() - started


# --- deadlines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_headers_then_silence_gets_408_and_is_closed(serve: Any, mode: str) -> None:
    server = serve(mode, request_header_timeout_s=1.0)
    with _connect(server) as sock:
        sock.sendall(b"GET /dcap HTTP/1.1\r\nHost: localhost\r\n")  # no blank line: headers never end
        answer, waited_s = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer.lower()
    assert waited_s < 4


@pytest.mark.parametrize("mode", MODES)
def test_a_connection_that_never_sends_a_request_is_closed(serve: Any, mode: str) -> None:
    server = serve(mode, request_header_timeout_s=1.0)
    with _connect(server) as sock:
        answer, waited_s = _until_closed(sock)
    assert answer == b""  # nothing was asked, so nothing is answered: the connection just ends
    assert waited_s < 4


def test_headers_trickled_a_byte_at_a_time_still_meet_the_deadline(serve: Any) -> None:
    """The deadline runs from the request's first byte: staying busy does not extend it."""
    server = serve(request_header_timeout_s=1.0)
    trickle = b"GET /dcap HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 60
    started = time.monotonic()
    answer = b""
    with _connect(server) as sock:
        sock.settimeout(0.05)
        for byte in trickle:  # 4 s worth, unless the server answers first
            sock.sendall(bytes([byte]))
            try:
                answer = sock.recv(65536)
                break
            except TimeoutError:
                continue
        sock.settimeout(LATE_S)
        answer += _until_closed(sock)[0]
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("mode", MODES)
def test_a_promised_body_never_sent_gets_408_and_is_closed(
    serve: Any, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gridshare.server.connections")
    server = serve(mode, request_body_timeout_s=1.0)
    with _connect(server) as sock:
        sock.sendall(
            b"POST /edev HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/sep+xml\r\n"
            b"Content-Length: 500\r\n\r\n<EndDevice xmlns="
        )
        answer, waited_s = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert waited_s < 4
    assert any("request body not complete" in r.getMessage() for r in caplog.records)
    # the server is fine: the next client is served
    with _connect(server, "device-2") as sock:
        sock.sendall(GET)
        assert _response(sock)[0] != 408


def test_an_idle_keep_alive_connection_is_closed(serve: Any) -> None:
    server = serve(keep_alive_timeout_s=1.0)
    with _connect(server) as sock:
        sock.sendall(GET)
        assert _response(sock)[0] == 200
        answer, waited_s = _until_closed(sock)
    assert answer == b""
    assert waited_s < 3


def test_keep_alive_requests_are_not_cut_by_the_header_deadline(serve: Any) -> None:
    """The header deadline of a later request starts at its first byte, not at the connection's."""
    server = serve(request_header_timeout_s=1.0, keep_alive_timeout_s=5.0)
    with _connect(server) as sock:
        for _ in range(3):
            sock.sendall(GET)
            assert _response(sock)[0] == 200
            time.sleep(0.7)  # 2.1 s in all: past one header timeout, within keep-alive


# --- connection caps ---------------------------------------------------------------------------


def test_an_extra_connection_from_one_client_gets_503_while_others_are_served(serve: Any) -> None:
    server = serve(max_connections_per_client=2)
    first, second = _connect(server, "device-1"), _connect(server, "device-1")
    for sock in (first, second):
        sock.sendall(GET)
        assert _response(sock)[0] == 200
    with _connect(server, "device-1") as extra:
        extra.sendall(GET)
        status, headers, body = _response(extra)
        assert status == 503
        assert headers["retry-after"].isdigit()
        assert b"too many connections" in body
        assert _until_closed(extra)[0] == b""
    with _connect(server, "device-2") as other:
        other.sendall(GET)
        assert _response(other)[0] == 200
    first.sendall(GET)  # device-1's admitted connections are still served
    assert _response(first)[0] == 200
    second.close()  # ...and a freed place can be taken again
    time.sleep(0.5)
    with _connect(server, "device-1") as again:
        again.sendall(GET)
        assert _response(again)[0] == 200
    first.close()


def test_the_process_wide_cap_refuses_the_next_connection(serve: Any) -> None:
    server = serve(max_connections=2)
    held = [_connect(server, name) for name in ("device-1", "device-2")]
    try:
        for sock in held:
            sock.sendall(GET)
            assert _response(sock)[0] == 200
        with _connect(server, "device-3") as extra:
            extra.sendall(GET)
            assert _response(extra)[0] == 503
    finally:
        for sock in held:
            sock.close()


def test_behind_a_proxy_the_trusted_proxy_is_not_capped_but_other_peers_are(serve: Any) -> None:
    trusted = serve("proxy", max_connections_per_client=1)
    held = [_connect(trusted) for _ in range(3)]  # one proxy, many devices behind it
    for sock in held:
        sock.sendall(GET)
        assert _response(sock)[0] != 503
        sock.close()
    stranger = serve("proxy", max_connections_per_client=1, trusted_proxies=["192.0.2.10"])
    with _connect(stranger) as first, _connect(stranger) as second:
        first.sendall(GET)
        assert _response(first)[0] != 503
        second.sendall(GET)
        assert _response(second)[0] == 503


# --- hang-ups ----------------------------------------------------------------------------------


def test_a_client_hanging_up_mid_body_is_one_info_line(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = serve()
    caplog.set_level(logging.INFO)
    # uvicorn's own loggers do not propagate to the root logger: listen to them directly
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(caplog.handler)
    try:
        with _connect(server) as sock:
            sock.sendall(
                b"POST /edev HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/sep+xml\r\n"
                b"Content-Length: 500\r\n\r\n<EndDevice xmlns="
            )
            time.sleep(0.3)  # the application is now waiting for the rest of the body
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("hung up" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
        time.sleep(0.3)  # anything else it would log about this connection
    finally:
        uvicorn_error.removeHandler(caplog.handler)
    hang_ups = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert len(hang_ups) == 1, caplog.text
    assert hang_ups[0].levelno == logging.INFO
    assert "POST /edev" in hang_ups[0].getMessage() and "of 500" in hang_ups[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text


# --- the bookkeeping on its own ----------------------------------------------------------------


def test_counter_refuses_past_either_cap_and_frees_on_release() -> None:
    counter = ConnectionCounter(per_client=2, total=3)
    assert counter.admit("lfdi:A") is None and counter.admit("lfdi:A") is None
    assert "limit 2" in (counter.admit("lfdi:A") or "")
    assert counter.admit("lfdi:B") is None
    assert "limit of 3" in (counter.admit("lfdi:C") or "")
    counter.release("lfdi:A")
    assert counter.open == 2 and counter.open_for("lfdi:A") == 1
    assert counter.admit("lfdi:A") is None


def test_uncounted_connections_only_meet_the_process_cap() -> None:
    counter = ConnectionCounter(per_client=1, total=2)
    assert counter.admit(UNCOUNTED) is None and counter.admit(UNCOUNTED) is None
    assert counter.admit(UNCOUNTED) is not None


def test_client_key_prefers_the_certificate_then_the_address() -> None:
    assert client_key("ABC", "10.0.0.1", ()) == "lfdi:ABC"
    assert client_key(None, "10.0.0.1", ()) == "peer:10.0.0.1"
    assert client_key(None, "10.0.0.1", ("10.0.0.0/8",)) == UNCOUNTED
    assert client_key(None, "192.0.2.1", ("10.0.0.0/8",)) == "peer:192.0.2.1"


def test_limits_come_from_settings_and_trusted_proxies_only_behind_a_proxy(tmp_path: Path) -> None:
    direct = ConnectionLimits.from_settings(Settings(data_dir=tmp_path, trusted_proxies=["10.0.0.1"]))
    assert direct.trusted_proxies == ()  # mTLS mode: a proxy address earns no exemption
    proxied = ConnectionLimits.from_settings(
        Settings(data_dir=tmp_path, behind_proxy=True, trusted_proxies=["10.0.0.1"], max_connections=7)
    )
    assert proxied.trusted_proxies == ("10.0.0.1",) and proxied.max_connections == 7
    unset = ConnectionLimits.from_settings(Settings(data_dir=tmp_path), fd_limit=2000)
    assert unset.max_connections == 2000 - 256  # what the open files allow, less the process's own
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path, request_header_timeout_s=0)
