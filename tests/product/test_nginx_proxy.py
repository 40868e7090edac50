"""GridShare at scale behind Debian's nginx: mutual TLS at nginx, two serving processes, one publisher.

The production shape on loopback: `deploy/nginx/render.py` renders the shipped template for free ports,
nginx (its own prefix, in the foreground, stopped by PID) terminates mutual TLS and balances over two
`gridshare serve --roles serve` processes in proxy mode; one `--roles operator,publish,notify` process
runs the envelope engine and the notifier. All three share one store: a PostgreSQL database, or one
SQLite file. Devices talk only to nginx, with their dev-PKI certificates, as they would in the field.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from gridshare.certs.devpki import ClientCert, DevPki, create_dev_pki, issue_client_certificate
from gridshare.store.models import EnvelopePointer, PublisherLease
from tests.support.processes import (
    Proc,
    clean_env,
    nginx_binary,
    render_nginx,
    start_gridshare,
    start_nginx,
    wait_until,
)
from tests.support.servers import _validate_xml, free_port, fresh_pg_database

NS = {"s": "urn:ieee:std:2030.5:ns"}


@dataclass
class Cluster:
    nginx_url: str
    pki: DevPki
    database_url: str
    servers: list[Proc]
    publisher: Proc
    nginx: Proc
    access_log: Path
    serve_ports: list[int]
    tmp: Path

    def tls(
        self, cert: Path | None = None, key: Path | None = None, ca: Path | None = None
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(ca or self.pki.ca_path))
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def device(self, who: str | ClientCert) -> httpx.Client:
        """A dev-PKI client talking to nginx over mTLS; every XML body is schema-checked."""
        me = self.pki.client(who) if isinstance(who, str) else who
        return httpx.Client(
            base_url=self.nginx_url,
            verify=self.tls(me.cert_path, me.key_path),
            event_hooks={"response": [_validate_xml]},
            timeout=20,
        )

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    def new_log_lines(self, before: int, count: int) -> list[str]:
        """The access log lines after the first `before`, once `count` are there (nginx writes each line
        just after sending the answer, so the client can be a moment ahead of the log)."""
        deadline = time.monotonic() + 10
        while len(lines := self.log_lines()[before:]) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return lines


def _derc_href(c: httpx.Client) -> str:
    """Walk the device's own resources as a device does: EndDevice -> FSA -> DERProgram -> DERControlList."""
    edev = etree.fromstring(c.get("/edev").content)[0].get("href")
    derp = etree.fromstring(c.get(f"{edev}/fsa/1/derp").content)[0]
    return str(derp.find("s:DERControlListLink", NS).get("href"))


def _controls(c: httpx.Client) -> int:
    r = c.get(_derc_href(c))
    assert r.status_code == 200, r.text
    return int(etree.fromstring(r.content).get("all"))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    binary = nginx_binary()
    tmp = tmp_path_factory.mktemp(f"nginx-{request.param}")
    data = tmp / "data"
    pki = create_dev_pki(data / "pki", devices=3, aggregators=1)
    if request.param == "sqlite":
        with _cluster(binary, tmp, pki, f"sqlite:///{data / 'gridshare.db'}") as running:
            yield running
    else:
        with fresh_pg_database() as url, _cluster(binary, tmp, pki, url) as running:
            yield running


@contextmanager
def _cluster(binary: str, tmp: Path, pki: DevPki, database_url: str) -> Iterator[Cluster]:
    nginx_port, operator_port = free_port(), free_port()
    serve_ports = [free_port(), free_port()]
    common = {
        "data_dir": str(tmp / "data"),
        "database_url": database_url,
        "behind_proxy": "true",
        "trusted_proxies": '["127.0.0.1"]',
        "public_base_url": f"https://127.0.0.1:{nginx_port}",
        "pen": "0",
    }
    logs = tmp / "logs"
    procs: list[Proc] = []
    try:
        # All three at once on an empty store: the start-up lock makes one of them migrate and seed.
        for i, port in enumerate(serve_ports, start=1):
            env = clean_env(**common, host="127.0.0.1", port=str(port))
            procs.append(start_gridshare(f"serve-{i}", "serve", env, logs, tmp))
        env = clean_env(**common, operator_host="127.0.0.1", operator_port=str(operator_port))
        publisher = start_gridshare("publisher", "operator,publish,notify", env, logs, tmp)
        procs.append(publisher)
        conf = tmp / "nginx"
        render_nginx(
            conf,
            "--listen", f"127.0.0.1:{nginx_port}",
            "--tls-cert", str(pki.server_cert_path),
            "--tls-key", str(pki.server_key_path),
            "--client-ca", str(pki.ca_path),
            "--worker-processes", "2",
            *[arg for port in serve_ports for arg in ("--upstream", f"127.0.0.1:{port}")],
        )  # fmt: skip
        nginx = start_nginx(binary, conf, logs)
        procs.append(nginx)
        for port in serve_ports:  # up: answers (403 without a forwarded certificate)
            wait_until(
                lambda port=port: httpx.get(f"http://127.0.0.1:{port}/dcap", timeout=2).status_code == 403,
                f"the serving process on port {port}",
                procs,
            )
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{operator_port}/openapi.json", timeout=2).status_code == 200,
            "the publisher's operator API",
            procs,
        )
        running = Cluster(
            nginx_url=f"https://127.0.0.1:{nginx_port}",
            pki=pki,
            database_url=database_url,
            servers=procs[:2],
            publisher=publisher,
            nginx=nginx,
            access_log=conf / "logs" / "access.log",
            serve_ports=serve_ports,
            tmp=tmp,
        )
        with running.device("device-1") as c:  # the engine has published the demo feeder's envelopes
            wait_until(lambda: _controls(c) > 0, "envelopes for device-1 through nginx", procs)
        yield running
    finally:
        for proc in reversed(procs):
            proc.stop()


# --- the device path ----------------------------------------------------------------------------------------


def test_devices_read_their_envelopes_through_nginx(cluster: Cluster) -> None:
    for name in ("device-1", "device-2"):  # dev devices, bound to the demo feeder's dynamic sites
        me = cluster.pki.client(name)
        with cluster.device(name) as c:
            edevs = etree.fromstring(c.get("/edev").content)
            assert [e.findtext("s:lFDI", namespaces=NS) for e in edevs] == [me.lfdi]
            derc = etree.fromstring(c.get(_derc_href(c), params={"l": 5}).content)
            assert derc.tag == "{urn:ieee:std:2030.5:ns}DERControlList"
            assert int(derc.get("all")) > 0 and len(derc) == min(5, int(derc.get("all")))
            assert derc.find("s:DERControl/s:DERControlBase", NS) is not None  # an envelope, not a stub


def test_requests_are_balanced_over_both_servers(cluster: Cluster) -> None:
    before = len(cluster.log_lines())
    with cluster.device("device-1") as c:  # one keep-alive connection to nginx, as a device polls
        href = _derc_href(c)
        for _ in range(40):
            assert c.get(href).status_code == 200
    lines = cluster.new_log_lines(before, 41)
    upstreams = Counter(m.group(1) for line in lines if (m := re.search(r"upstream=(\S+)", line)))
    served = {f"127.0.0.1:{port}": upstreams[f"127.0.0.1:{port}"] for port in cluster.serve_ports}
    assert sum(served.values()) >= 40
    assert min(served.values()) >= 10, served  # round robin: about half each


def test_a_write_on_one_server_is_read_on_the_other(cluster: Cluster) -> None:
    """A new device registers through nginx (the POST lands on one process); every GET after sees it."""
    me = issue_client_certificate(cluster.pki.directory, "device-new", "device")
    body = (
        f'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>{me.lfdi}</lFDI><sFDI>{me.sfdi}</sFDI>'
        "<changedTime>0</changedTime></EndDevice>"
    )
    with cluster.device(me) as c:
        r = c.post("/edev", content=body, headers={"content-type": "application/sep+xml"})
        assert r.status_code in (201, 204), r.text
        for _ in range(6):  # alternate servers
            edevs = etree.fromstring(c.get("/edev").content)
            assert [e.findtext("s:lFDI", namespaces=NS) for e in edevs] == [me.lfdi]


# --- the certificate header: only nginx sets it -------------------------------------------------------------


def _escaped(cert: Path) -> str:
    pem = cert.read_text()
    return quote(pem[: pem.index("-----END CERTIFICATE-----")] + "-----END CERTIFICATE-----\n")


def test_a_client_sent_certificate_header_is_replaced_by_nginx(cluster: Cluster) -> None:
    victim = cluster.pki.client("device-2")
    me = cluster.pki.client("device-1")
    with cluster.device("device-2") as c:
        victim_edev = etree.fromstring(c.get("/edev").content)[0].get("href")
        victim_derc = _derc_href(c)
    forged = _escaped(victim.cert_path)
    for headers in (
        {"X-Client-Cert": forged},
        {"x-client-cert": forged, "X_Client_Cert": forged},
        [("X-Client-Cert", forged), ("X-Client-Cert", forged)],
    ):
        with cluster.device("device-1") as c:
            c.headers.clear()
            r = c.get("/edev", headers=headers)
            assert r.status_code == 200
            lfdis = [e.findtext("s:lFDI", namespaces=NS) for e in etree.fromstring(r.content)]
            assert lfdis == [me.lfdi]  # device-1, from its TLS certificate, never device-2
            for href in (victim_edev, victim_derc):
                r = c.get(href, headers=headers)
                assert r.status_code in (403, 404), r.text
                assert victim.lfdi.encode() not in r.content


def test_a_forged_header_without_a_certificate_never_reaches_gridshare(cluster: Cluster) -> None:
    before = len(cluster.log_lines())
    forged = _escaped(cluster.pki.client("device-2").cert_path)
    with httpx.Client(verify=cluster.tls(), timeout=10) as c:
        r = c.get(f"{cluster.nginx_url}/dcap", headers={"X-Client-Cert": forged})
    assert r.status_code == 403
    assert b"DeviceCapability" not in r.content
    [line] = cluster.new_log_lines(before, 1)
    assert "upstream=-" in line and "verify=NONE" in line


# --- who nginx lets in --------------------------------------------------------------------------------------


def test_a_certificate_from_another_ca_is_refused_by_nginx(cluster: Cluster) -> None:
    foreign = create_dev_pki(cluster.tmp / "foreign-pki", devices=1, aggregators=0)
    me = foreign.client("device-1")
    before = len(cluster.log_lines())
    ctx = cluster.tls(me.cert_path, me.key_path)
    with httpx.Client(verify=ctx, timeout=10) as c:
        r = c.get(f"{cluster.nginx_url}/dcap", headers={"X-Client-Cert": _escaped(me.cert_path)})
    assert r.status_code == 403
    [line] = cluster.new_log_lines(before, 1)
    assert "upstream=-" in line and "verify=FAILED" in line


def _ca(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_len: int,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _chain_under_serca(cluster: Cluster, intermediates: int, name: str) -> tuple[Path, Path]:
    """A device certificate under the dev SERCA through `intermediates` CAs (MICA, MCA, ...)."""
    serca_key = serialization.load_pem_private_key((cluster.pki.directory / "serca.key").read_bytes(), None)
    serca = x509.load_pem_x509_certificate((cluster.pki.directory / "serca.pem").read_bytes())
    assert isinstance(serca_key, ec.EllipticCurvePrivateKey)
    issuer, issuer_key, cas = serca, serca_key, []
    for level in range(intermediates):
        key = ec.generate_private_key(ec.SECP256R1())
        ca = _ca(f"{name} CA {level}", key, issuer, issuer_key, intermediates - level - 1)
        cas.append(ca)
        issuer, issuer_key = ca, key
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC))  # 2030.5: no expiry
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )
    cert_path, key_path = cluster.tmp / f"{name}.pem", cluster.tmp / f"{name}.key"
    chain = [leaf, *reversed(cas)]  # leaf first, then MCA, MICA: as a device sends them
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_verify_depth_admits_serca_mica_mca_device_and_nothing_longer(cluster: Cluster) -> None:
    cert, key = _chain_under_serca(cluster, 2, "device-under-mca")  # SERCA -> MICA -> MCA -> device
    with httpx.Client(verify=cluster.tls(cert, key), timeout=10) as c:
        r = c.get(f"{cluster.nginx_url}/dcap")
    assert r.status_code == 200, r.text  # a new device registers itself (open registration)
    cert, key = _chain_under_serca(cluster, 3, "device-too-deep")  # one CA more than 2030.5 has
    with httpx.Client(verify=cluster.tls(cert, key), timeout=10) as c:
        assert c.get(f"{cluster.nginx_url}/dcap").status_code == 403


# --- TLS parameters: CSIP-AUS suites, TLS 1.2+ --------------------------------------------------------------


def _handshake(cluster: Cluster, configure: Callable[[ssl.SSLContext], None]) -> tuple[str, str]:
    me = cluster.pki.client("device-1")
    ctx = cluster.tls(me.cert_path, me.key_path)
    configure(ctx)
    port = int(cluster.nginx_url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version() or "", (tls.cipher() or ("",))[0]


def _tls12(ciphers: str) -> Callable[[ssl.SSLContext], None]:
    def configure(ctx: ssl.SSLContext) -> None:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)

    return configure


def test_the_csip_aus_suite_on_tls_12_and_only_ecdsa_aead_suites(cluster: Cluster) -> None:
    assert _handshake(cluster, _tls12("ECDHE-ECDSA-AES128-CCM8")) == ("TLSv1.2", "ECDHE-ECDSA-AES128-CCM8")
    for suite in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"):
        assert _handshake(cluster, _tls12(suite)) == ("TLSv1.2", suite)
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):  # CBC: offered by the client, refused
        _handshake(cluster, _tls12("ECDHE-ECDSA-AES128-SHA256"))
    assert _handshake(cluster, lambda ctx: None)[0] == "TLSv1.3"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_11_is_refused(cluster: Cluster) -> None:
    def tls11(ctx: ssl.SSLContext) -> None:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1

    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
        _handshake(cluster, tls11)


# --- roles: the serving processes neither publish nor notify ------------------------------------------------


def test_only_the_publisher_publishes_and_notifies(cluster: Cluster) -> None:
    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.connect() as conn:
            holder = conn.execute(sa.select(PublisherLease.holder)).scalar_one()
            pointer = conn.execute(sa.select(EnvelopePointer.set_id)).scalar_one()
    finally:
        engine.dispose()
    assert pointer is not None
    assert holder.split(":")[1] == str(cluster.publisher.pid)
    for server in cluster.servers:
        text = server.log.read_text()
        assert "roles: serve;" in text
        for marker in ("recomputation every", "envelopes published", "notifications: changes checked"):
            assert marker not in text
    text = cluster.publisher.log.read_text()
    assert "recomputation every" in text and "notifications: changes checked" in text
    assert "CSIP-AUS endpoint on" not in text
