"""The device port's own TLS layer carries data like the event loop's did: large, slow, pipelined.

`server/tls_alerts.py` replaces the event loop's TLS protocol on the device port (to send alerts)
and shortens its per-request path (one record per response, no exception per read). These tests
drive it through the edges that shortcut could break: a response far above the write high-water
mark read by a slow client (pause/resume writing), a request body of many records, pipelined
requests answered in order, and a client's close_notify. A trivial ASGI app keeps them fast.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gridshare.certs.devpki import DevPki
from gridshare.core.settings import Settings
from gridshare.server.listener import device_config
from gridshare.server.tls import server_context
from tests.support.servers import free_port

BIG = bytes(range(256)) * (16 * 1024)  # 4 MiB, far above asyncio's 512 KiB TLS write high-water mark


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET /big: 4 MiB; POST /hash: the body's SHA-256; GET /n/<k>: k (to check pipelining order)."""
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        digest = hashlib.sha256()
        more = True
        while more:
            message = await receive()
            digest.update(message.get("body", b""))
            more = message.get("more_body", False)
        body = digest.hexdigest().encode()
    elif scope["path"] == "/big":
        body = BIG
    else:
        body = scope["path"].rsplit("/", 1)[-1].encode()
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def port(pki: DevPki, tmp_path: Path) -> Iterator[int]:
    settings = Settings(data_dir=tmp_path, port=free_port(), max_body_bytes=8 * 1024 * 1024)
    tls = server_context(pki.server_cert_path, pki.server_key_path, pki.ca_path)
    config = device_config(_app, settings, tls, host="127.0.0.1", port=settings.port)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield settings.port
    server.should_exit = True
    thread.join(timeout=10)


def _connect(pki: DevPki, port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    device = pki.client("device-1")
    ctx.load_cert_chain(str(device.cert_path), str(device.key_path))
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _response(sock: ssl.SSLSocket, buffered: bytearray) -> bytes:
    while b"\r\n\r\n" not in buffered:
        buffered += sock.recv(65536)
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = bytearray(rest)
    while len(body) < length:
        body += sock.recv(65536)
    buffered[:] = body[length:]
    return bytes(body[:length])


def test_a_large_response_to_a_slow_reader_arrives_whole(pki: DevPki, port: int) -> None:
    with _connect(pki, port) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(1.0)  # the server fills the socket buffers and must pause, then resume
        assert _response(sock, bytearray()) == BIG
        sock.sendall(b"GET /n/2 HTTP/1.1\r\nHost: localhost\r\n\r\n")  # and the connection lives on
        assert _response(sock, bytearray()) == b"2"


def test_a_large_request_body_arrives_whole(pki: DevPki, port: int) -> None:
    with _connect(pki, port) as sock:
        head = f"POST /hash HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(BIG)}\r\n\r\n".encode()
        sock.sendall(head + BIG)
        assert _response(sock, bytearray()) == hashlib.sha256(BIG).hexdigest().encode()


def test_pipelined_requests_are_answered_in_order(pki: DevPki, port: int) -> None:
    with _connect(pki, port) as sock:
        sock.sendall(b"".join(f"GET /n/{k} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode() for k in range(20)))
        buffered = bytearray()
        assert [_response(sock, buffered) for _ in range(20)] == [str(k).encode() for k in range(20)]


def test_the_server_answers_a_client_close_notify_and_closes(pki: DevPki, port: int) -> None:
    sock = _connect(pki, port)
    sock.sendall(b"GET /n/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert _response(sock, bytearray()) == b"1"
    raw = sock.unwrap()  # sends close_notify and waits for the server's
    assert raw.recv(1) == b""  # then the server closes the TCP connection
    raw.close()
