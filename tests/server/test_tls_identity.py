"""The TLS door: who gets in, with which ciphers, and what an unknown or revoked certificate sees."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from gridshare.store.models import ClientCertificate, ClientKind
from gridshare.store.queries.identity import revoke_certificate
from tests.support.servers import T0, RunningServer


def _handshake(server: RunningServer, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    port = int(server.base_url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _get(sock: ssl.SSLSocket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_ccm8_on_tls12_is_offered(server: RunningServer) -> None:
    ctx = server.tls("device-1")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8")
    with _handshake(server, ctx) as sock:
        assert sock.cipher()[0] == "ECDHE-ECDSA-AES128-CCM8"
        assert _get(sock, "/dcap").startswith(b"HTTP/1.1 200")


def test_tls_below_1_2_is_refused(server: RunningServer) -> None:
    ctx = server.tls("device-1")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(server, ctx)


def test_client_without_certificate_gets_nothing(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url, verify=server.tls(None)) as c, pytest.raises(httpx.HTTPError):
        c.get("/dcap")


def test_certificate_from_another_ca_is_refused(server: RunningServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "s.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "s.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = server.tls(None)
    ctx.load_cert_chain(str(tmp_path / "s.pem"), str(tmp_path / "s.key"))
    with httpx.Client(base_url=server.base_url, verify=ctx) as c, pytest.raises(httpx.HTTPError):
        c.get("/dcap")


def test_unregistered_certificate_is_refused_when_registration_is_closed(server: RunningServer) -> None:
    server.ctx.settings.open_registration = False
    with server.client("device-3") as c:
        for path in ("/dcap", "/edev", "/tm", "/mup"):
            r = c.get(path)
            assert r.status_code == 403
            assert etree.QName(etree.fromstring(r.content)).localname == "Error"  # only an Error, no data
    with server.client("aggregator-1") as c:  # registered aggregators are unaffected
        assert c.get("/dcap").status_code == 200


def test_revoked_certificate_is_refused_at_once(server: RunningServer) -> None:
    agg = server.pki.client("aggregator-1")
    with server.client("aggregator-1") as c:
        assert c.get("/edev").status_code == 200
        # Acknowledged as the operator API acknowledges a revocation: once this process has heard of it.
        with server.write() as s:
            assert s.query(ClientCertificate).filter_by(lfdi=agg.lfdi).one().kind is ClientKind.aggregator
            assert revoke_certificate(s, agg.lfdi, now_s=T0)
        # the same keep-alive connection is refused on its next request
        r = c.get("/edev")
        assert r.status_code == 403 and b"<Error " in r.content and b"EndDevice" not in r.content
