"""Dev PKI: chains really verify (signatures and a real mutual-TLS handshake), identities match, CLI works."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridshare.certs.commands import certs_group
from gridshare.certs.devpki import (
    DevPki,
    create_dev_pki,
    ensure_dev_pki,
    issue_client_certificate,
    load_dev_pki,
)

NO_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def _pem_certs(path: Path | str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def _expected_identity(cert: x509.Certificate) -> tuple[str, int]:
    """lFDI/sFDI computed here from the spec, independently of certs.identity."""
    lfdi = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()[:40].upper()
    prefix = int(lfdi[:9], 16)
    digit = (10 - sum(map(int, str(prefix))) % 10) % 10
    return lfdi, prefix * 10 + digit


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    key = parent.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))  # raises if bad
    return True


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"), devices=2, aggregators=1)


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("other-pki"), devices=1, aggregators=0)


# --- structure -------------------------------------------------------------------------------


def test_every_key_is_p256_and_private(pki: DevPki) -> None:
    keys = sorted(pki.directory.glob("*.key"))
    assert {k.name for k in keys} >= {"serca.key", "mica.key", "server.key", "device-1.key", "device-2.key"}
    for path in keys:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), path
        assert isinstance(key.curve, ec.SECP256R1), path
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in pki.directory.glob("*.pem"):
        for cert in _pem_certs(path):
            assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
            assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_ca_pem_is_only_the_self_signed_root(pki: DevPki) -> None:
    (root,) = _pem_certs(pki.ca_path)
    assert root.subject == root.issuer
    assert _signed_by(root, root)
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca


def test_chains_verify_to_root(pki: DevPki) -> None:
    (root,) = _pem_certs(pki.ca_path)
    for path in [pki.server_cert_path, *(c.cert_path for c in pki.clients)]:
        chain = _pem_certs(path)
        assert len(chain) == 2, f"{path} should hold leaf + intermediate"
        leaf, intermediate = chain
        assert _signed_by(leaf, intermediate)
        assert _signed_by(intermediate, root)
        assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_cert_names_and_usage(pki: DevPki) -> None:
    server = _pem_certs(pki.server_cert_path)[0]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert server.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=3 * 365)


def test_device_certs_never_expire_and_aggregators_do(pki: DevPki) -> None:
    for client in pki.clients:
        leaf = _pem_certs(client.cert_path)[0]
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == client.name
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
        if client.kind == "device":
            assert leaf.not_valid_after_utc == NO_EXPIRY
        else:
            assert leaf.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=3 * 365)


def test_clients_json_lists_identities_of_leaves(pki: DevPki) -> None:
    index = json.loads((pki.directory / "clients.json").read_text())
    assert Path(index["ca"]).is_absolute() and Path(index["ca"]) == pki.directory / "ca.pem"
    assert Path(index["server_cert"]).is_file() and Path(index["server_key"]).is_file()
    kinds = [c["kind"] for c in index["clients"]]
    assert kinds.count("device") >= 2 and kinds.count("aggregator") >= 1
    for entry in index["clients"]:
        assert Path(entry["cert"]).is_absolute() and Path(entry["key"]).is_absolute()
        leaf = _pem_certs(entry["cert"])[0]
        assert (entry["lfdi"], entry["sfdi"]) == _expected_identity(leaf)
    names = [c["name"] for c in index["clients"]]
    assert {"device-1", "device-2", "aggregator-1"} <= set(names)
    assert load_dev_pki(pki.directory) == pki
    assert ensure_dev_pki(pki.directory) == pki  # existing PKI is loaded, not regenerated


def test_create_refuses_to_overwrite_without_force(pki: DevPki) -> None:
    before = (pki.directory / "clients.json").read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        create_dev_pki(pki.directory)
    assert (pki.directory / "clients.json").read_bytes() == before


def test_force_regenerates(tmp_path: Path) -> None:
    first = create_dev_pki(tmp_path, devices=1, aggregators=0)
    second = create_dev_pki(tmp_path, devices=1, aggregators=0, force=True)
    assert first.client("device-1").lfdi != second.client("device-1").lfdi
    assert _expected_identity(_pem_certs(tmp_path / "device-1.pem")[0])[0] == second.client("device-1").lfdi


def test_ensure_creates_when_missing(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "new" / "pki")
    assert (tmp_path / "new" / "pki" / "ca.pem").is_file()
    assert pki.client("device-1").kind == "device"


# --- real mutual TLS ---------------------------------------------------------------------------


def _handshake(pki: DevPki, cert: Path | None, key: Path | None) -> tuple[bool, str | None]:
    """Run one TLS 1.2 handshake against a server trusting pki's ca.pem.

    Returns (client succeeded, CN of the client cert the server saw or None).
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    server_ctx.load_verify_locations(pki.ca_path)
    server_ctx.load_cert_chain(pki.server_cert_path, pki.server_key_path)

    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    client_ctx.load_verify_locations(pki.ca_path)
    if cert is not None:
        client_ctx.load_cert_chain(cert, key)

    seen: dict[str, str | None] = {"cn": None}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert() or {}
                    for rdn in peer.get("subject", ()):
                        for k, v in rdn:
                            if k == "commonName":
                                seen["cn"] = v
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ok = False
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                ok = tls.recv(2) == b"ok"
        except (ssl.SSLError, OSError):
            ok = False
        thread.join(5)
    return ok, seen["cn"]


def test_tls_handshake_with_device_cert_succeeds(pki: DevPki) -> None:
    device = pki.client("device-1")
    assert _handshake(pki, device.cert_path, device.key_path) == (True, "device-1")


def test_tls_handshake_with_aggregator_cert_succeeds(pki: DevPki) -> None:
    agg = pki.client("aggregator-1")
    assert _handshake(pki, agg.cert_path, agg.key_path) == (True, "aggregator-1")


def test_tls_rejects_cert_from_unrelated_pki(pki: DevPki, other_pki: DevPki) -> None:
    stranger = other_pki.client("device-1")
    assert _handshake(pki, stranger.cert_path, stranger.key_path) == (False, None)


def test_tls_rejects_client_without_cert(pki: DevPki) -> None:
    assert _handshake(pki, None, None) == (False, None)


# --- issuing more -----------------------------------------------------------------------------


def test_issue_client_certificate_appends_and_rejects_duplicates(tmp_path: Path) -> None:
    base = create_dev_pki(tmp_path, devices=1, aggregators=0)
    issued = issue_client_certificate(tmp_path, "inverter-42", "device")
    leaf, intermediate = _pem_certs(issued.cert_path)
    assert _signed_by(leaf, intermediate)
    assert _signed_by(intermediate, _pem_certs(base.ca_path)[0])
    assert leaf.not_valid_after_utc == NO_EXPIRY
    assert (issued.lfdi, issued.sfdi) == _expected_identity(leaf)

    index = json.loads((tmp_path / "clients.json").read_text())
    assert [c["name"] for c in index["clients"]] == ["device-1", "inverter-42"]
    assert index["clients"][-1]["lfdi"] == _expected_identity(leaf)[0]

    with pytest.raises(ValueError, match="inverter-42"):
        issue_client_certificate(tmp_path, "inverter-42", "aggregator")
    with pytest.raises(ValueError):
        issue_client_certificate(tmp_path, "../escape", "device")
    assert len(json.loads((tmp_path / "clients.json").read_text())["clients"]) == 2


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_init_prints_identities_and_refuses_second_run(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "dev-pki"
    result = runner.invoke(certs_group, ["init", str(target), "--devices", "3", "--aggregators", "1"])
    assert result.exit_code == 0, result.output
    index = json.loads((target / "clients.json").read_text())
    assert len(index["clients"]) == 4
    for entry in index["clients"]:
        assert _expected_identity(_pem_certs(entry["cert"])[0])[0] in result.output
        assert str(entry["sfdi"]) in result.output
    assert "ca.pem" in result.output

    again = runner.invoke(certs_group, ["init", str(target)])
    assert again.exit_code == 1
    assert str(target) in again.output and "--force" in again.output
    assert "Traceback" not in again.output


def test_cli_lfdi_prints_leaf_identity(pki: DevPki) -> None:
    device = pki.client("device-2")
    lfdi, sfdi = _expected_identity(_pem_certs(device.cert_path)[0])
    result = CliRunner().invoke(certs_group, ["lfdi", str(device.cert_path)])
    assert result.exit_code == 0, result.output
    assert f"lFDI: {lfdi}" in result.output
    assert f"sFDI: {sfdi}" in result.output


@pytest.mark.parametrize("content", [b"this is not a certificate\n", None])
def test_cli_lfdi_bad_input_fails_cleanly(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "garbage.pem"
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(certs_group, ["lfdi", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # click's clean exit, not an uncaught error
    assert "Traceback" not in result.output
    assert "garbage.pem" in result.output


def test_cli_issue(tmp_path: Path) -> None:
    create_dev_pki(tmp_path, devices=0, aggregators=0)
    result = CliRunner().invoke(certs_group, ["issue", str(tmp_path), "agg-x", "--kind", "aggregator"])
    assert result.exit_code == 0, result.output
    lfdi, _ = _expected_identity(_pem_certs(tmp_path / "agg-x.pem")[0])
    assert f"lFDI: {lfdi}" in result.output
    dup = CliRunner().invoke(certs_group, ["issue", str(tmp_path), "agg-x"])
    assert dup.exit_code == 1 and "agg-x" in dup.output
