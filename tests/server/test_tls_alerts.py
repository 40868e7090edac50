"""A refused certificate gets the TLS alert that says why, not a bare close (issue 17, item 3).

Before, the event loop's TLS protocol dropped the alert OpenSSL had written (CPython gh-98078, and
uvloop's copy of it): every refused device saw "unexpected EOF", exactly like a network fault. These
tests present a foreign-CA, an expired, a not-yet-valid and no certificate, on TLS 1.2 and 1.3, and
check the alert a Python client (and `openssl s_client`, where installed) reports; and that what must
keep working does: CSIP-AUS CCM8, session resumption, the handshake timeout.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridshare.certs.devpki import DevPki
from tests.support.servers import RunningServer, running_server
from tests.support.tls_pki import expired_client, foreign_client, not_yet_valid_client

TLS_VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2"),
    pytest.param(ssl.TLSVersion.TLSv1_3, id="tls1.3"),
]
REQUEST = b"GET /dcap HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def _port(server: RunningServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def _client_ctx(
    server: RunningServer, version: ssl.TLSVersion, cert: tuple[Path, Path] | None
) -> ssl.SSLContext:
    ctx = server.tls(None)
    ctx.minimum_version = ctx.maximum_version = version
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def _exchange(server: RunningServer, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None) -> bytes:
    """Handshake, one request, read to the end. A TLS alert surfaces as ssl.SSLError (in the handshake
    on TLS 1.2; on TLS 1.3 the client's side of the handshake is over before the server has checked
    its certificate, so the alert arrives on the first read)."""
    raw = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as sock:
        sock.sendall(REQUEST)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _refusal_reason(server: RunningServer, ctx: ssl.SSLContext) -> str:
    try:
        answer = _exchange(server, ctx)
    except ssl.SSLError as exc:
        return str(exc.reason)
    except OSError as exc:
        return f"no alert: {exc!r}"
    return f"no alert: the connection ended after {answer[:40]!r}"


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_certificate_from_a_foreign_ca_gets_unknown_ca(
    server: RunningServer, tmp_path: Path, version: ssl.TLSVersion, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gridshare.server.connections")
    ctx = _client_ctx(server, version, foreign_client(tmp_path / "foreign"))
    assert _refusal_reason(server, ctx) == "TLSV1_ALERT_UNKNOWN_CA"
    # ...and the operator's log says who was refused and why, in one line without a traceback
    refusals = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert refusals[0].levelno == logging.INFO and refusals[0].exc_info is None
    assert "unable to get local issuer certificate" in refusals[0].getMessage()


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_expired_certificate_gets_certificate_expired(
    server: RunningServer, pki: DevPki, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    ctx = _client_ctx(server, version, expired_client(pki, tmp_path))
    assert _refusal_reason(server, ctx) == "SSLV3_ALERT_CERTIFICATE_EXPIRED"


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_certificate_not_valid_yet_gets_bad_certificate(
    server: RunningServer, pki: DevPki, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    ctx = _client_ctx(server, version, not_yet_valid_client(pki, tmp_path))
    assert _refusal_reason(server, ctx) == "SSLV3_ALERT_BAD_CERTIFICATE"


@pytest.mark.parametrize(
    ("version", "alert"),
    [
        (ssl.TLSVersion.TLSv1_2, "SSLV3_ALERT_HANDSHAKE_FAILURE"),
        (ssl.TLSVersion.TLSv1_3, "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
    ],
    ids=["tls1.2", "tls1.3"],
)
def test_no_certificate_gets_certificate_required(
    server: RunningServer, version: ssl.TLSVersion, alert: str
) -> None:
    assert _refusal_reason(server, _client_ctx(server, version, None)) == alert


def test_a_good_device_is_served_between_refusals(server: RunningServer, tmp_path: Path) -> None:
    foreign = foreign_client(tmp_path / "foreign")
    for _ in range(3):
        _refusal_reason(server, _client_ctx(server, ssl.TLSVersion.TLSv1_3, foreign))
        answer = _exchange(server, server.tls("device-1"))
        assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command line tool")
def test_openssl_s_client_sees_the_unknown_ca_alert(server: RunningServer, tmp_path: Path) -> None:
    cert, key = foreign_client(tmp_path / "foreign")
    run = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{_port(server)}",
            "-CAfile",
            str(server.pki.ca_path),
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-ign_eof",
        ],
        input=REQUEST,
        capture_output=True,
        timeout=30,
    )
    output = (run.stdout + run.stderr).decode(errors="replace")
    assert "alert unknown ca" in output, output[-800:]
    assert "unexpected eof" not in output


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_sessions_resume_and_csip_aus_ccm8_is_offered(server: RunningServer, version: ssl.TLSVersion) -> None:
    ctx = server.tls("device-1")
    ctx.minimum_version = ctx.maximum_version = version
    if version == ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8")
    raw = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as first:
        first.sendall(REQUEST)
        while first.recv(65536):
            pass
        session = first.session
        if version == ssl.TLSVersion.TLSv1_2:
            assert first.cipher()[0] == "ECDHE-ECDSA-AES128-CCM8"
    assert session is not None
    raw = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as again:
        assert again.session_reused
        again.sendall(REQUEST)
        assert again.recv(65536).startswith(b"HTTP/1.1 200")


@pytest.fixture
def short_handshake_server(pki: DevPki, database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(pki, database_url, tmp_path, tls_handshake_timeout_s=1.0) as running:
        yield running


def test_a_stalled_handshake_is_dropped_after_the_handshake_timeout(
    short_handshake_server: RunningServer,
) -> None:
    with socket.create_connection(("127.0.0.1", _port(short_handshake_server)), timeout=15) as raw:
        raw.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        started = time.monotonic()
        assert raw.recv(1024) == b""
        assert time.monotonic() - started < 5  # the event loop's own default is 60 s
