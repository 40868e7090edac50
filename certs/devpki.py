"""A throw-away IEEE 2030.5-shaped PKI for development, tests and the load simulator.

Mirrors the real hierarchy closely enough (SERCA -> MICA -> device, P-256/ECDSA-SHA256, no-expiry
device certificates) that the server's mutual-TLS and lFDI code paths are exercised for real.
Never use these keys outside a development machine: they are written unencrypted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridshare.certs.identity import lfdi_from_certificate, normalize_lfdi, sfdi_from_lfdi

__all__ = [
    "NO_EXPIRY",
    "ClientCert",
    "ClientKind",
    "DevPki",
    "create_dev_pki",
    "ensure_dev_pki",
    "issue_client_certificate",
    "issue_client_certificates",
    "load_dev_pki",
]

ClientKind = Literal["device", "aggregator"]
_KINDS: tuple[str, ...] = ("device", "aggregator")

#: 2030.5 device certificates "do not expire": notAfter is the GeneralizedTime 99991231235959Z.
NO_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
CA_VALIDITY = dt.timedelta(days=3653)
LEAF_VALIDITY = dt.timedelta(days=825)
#: Backdate notBefore a little so a peer with a slightly slow clock still accepts fresh certs.
_CLOCK_SKEW = dt.timedelta(hours=1)

INDEX_FILE = "clients.json"
CA_FILE = "ca.pem"
ROOT_CERT_FILE, ROOT_KEY_FILE = "serca.pem", "serca.key"
INTERMEDIATE_CERT_FILE, INTERMEDIATE_KEY_FILE = "mica.pem", "mica.key"
SERVER_CERT_FILE, SERVER_KEY_FILE = "server.pem", "server.key"
_RESERVED_NAMES = frozenset({"ca", "serca", "mica", "server", "clients"})
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ORG = "GridShare (development only)"


@dataclass(frozen=True, slots=True)
class ClientCert:
    """One client identity in the dev PKI: files on disk plus the identifiers the server will see."""

    name: str
    kind: ClientKind
    cert_path: Path
    key_path: Path
    lfdi: str
    sfdi: int

    def to_json(self) -> dict[str, Any]:
        """The clients.json entry; paths absolute so the file is usable from any working directory."""
        return {
            "name": self.name,
            "kind": self.kind,
            "cert": str(self.cert_path),
            "key": str(self.key_path),
            "lfdi": self.lfdi,
            "sfdi": self.sfdi,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientCert:
        """Parse a clients.json entry, rejecting kinds and lFDIs we would not have written."""
        kind = data["kind"]
        if kind not in _KINDS:
            raise ValueError(f"unknown client kind {kind!r} for {data.get('name')!r}")
        return cls(
            name=str(data["name"]),
            kind=kind,
            cert_path=Path(data["cert"]),
            key_path=Path(data["key"]),
            lfdi=normalize_lfdi(data["lfdi"]),
            sfdi=int(data["sfdi"]),
        )


@dataclass(slots=True)
class DevPki:
    """The files of a generated dev PKI, as listed in its clients.json."""

    directory: Path
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    clients: list[ClientCert] = field(default_factory=list)

    def client(self, name: str) -> ClientCert:
        """Look a client up by name; KeyError names the ones that exist, to catch typos quickly."""
        for c in self.clients:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.clients) or "none"
        raise KeyError(f"no client {name!r} in {self.directory} (known: {known})")

    @property
    def devices(self) -> list[ClientCert]:
        """Clients of kind "device"."""
        return [c for c in self.clients if c.kind == "device"]

    @property
    def aggregators(self) -> list[ClientCert]:
        """Clients of kind "aggregator"."""
        return [c for c in self.clients if c.kind == "aggregator"]

    def to_json(self) -> dict[str, Any]:
        """The clients.json document."""
        return {
            "ca": str(self.ca_path),
            "server_cert": str(self.server_cert_path),
            "server_key": str(self.server_key_path),
            "clients": [c.to_json() for c in self.clients],
        }


# ---------------------------------------------------------------------------------------------
# Low-level helpers
# ---------------------------------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    """2030.5 mandates ECC P-256 for every key in the hierarchy."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    """digitalSignature for ECDHE-ECDSA handshakes; keyAgreement as 2030.5 device certs carry it."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_public_key: ec.EllipticCurvePublicKey,
    not_after: dt.datetime,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    """Fields every certificate in the hierarchy shares, including the SKI/AKI chain-building hints."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable only by its owner; chmod again in case the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Replace the index atomically so a crash or a concurrent reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".clients-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the index holds no secrets
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_client_name(name: str) -> None:
    """Names become file names, so keep them to a safe character set and off the CA/server files."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid client name {name!r}: use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    if name.lower() in _RESERVED_NAMES:
        raise ValueError(f"client name {name!r} is reserved for the PKI's own files")


@dataclass(frozen=True, slots=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


# Cache of loaded intermediates, keyed by file identity, so issuing thousands of client certs for
# the simulator does not re-parse the CA key every time (and notices if the PKI is regenerated).
_issuer_cache: dict[Path, tuple[tuple[int, int], _Issuer]] = {}


def _load_issuer(directory: Path) -> _Issuer:
    cert_path = directory / INTERMEDIATE_CERT_FILE
    key_path = directory / INTERMEDIATE_KEY_FILE
    stamp = (cert_path.stat().st_mtime_ns, key_path.stat().st_mtime_ns)
    cached = _issuer_cache.get(directory)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    issuer = _Issuer(cert=cert, key=key)
    _issuer_cache[directory] = (stamp, issuer)
    return issuer


def _issue_client(
    directory: Path, issuer: _Issuer, name: str, kind: ClientKind, now: dt.datetime
) -> ClientCert:
    """Create, sign and write one client certificate (leaf + intermediate in the .pem)."""
    key = _new_key()
    not_after = NO_EXPIRY if kind == "device" else now + LEAF_VALIDITY
    cert = (
        _builder(_name(name), issuer.cert.subject, key.public_key(), issuer.key.public_key(), not_after, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(_cert_pem(cert, issuer.cert))
    lfdi = lfdi_from_certificate(cert)
    return ClientCert(
        name=name, kind=kind, cert_path=cert_path, key_path=key_path, lfdi=lfdi, sfdi=sfdi_from_lfdi(lfdi)
    )


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def create_dev_pki(
    directory: Path,
    *,
    devices: int = 2,
    aggregators: int = 1,
    server_names: tuple[str, ...] = ("localhost",),
    server_ips: tuple[str, ...] = ("127.0.0.1",),
    force: bool = False,
) -> DevPki:
    """Generate root, intermediate, server and client certificates in ``directory``.

    Refuses to overwrite an existing PKI (its clients.json) unless ``force``: devices enrolled
    against the old lFDIs would silently stop matching.
    """
    if devices < 0 or aggregators < 0:
        raise ValueError("devices and aggregators must be >= 0")
    if not server_names and not server_ips:
        raise ValueError("the server certificate needs at least one DNS name or IP address")
    directory = Path(directory).expanduser().resolve()
    index = directory / INDEX_FILE
    if index.exists():
        if not force:
            raise FileExistsError(
                f"a dev PKI already exists in {directory} ({INDEX_FILE} found); pass --force to regenerate it"
            )
        _remove_old_clients(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    # Root (SERCA-style): self-signed, the only trust anchor.
    root_key = _new_key()
    root_name = _name("GridShare dev SERCA")
    root = (
        _builder(root_name, root_name, root_key.public_key(), root_key.public_key(), now + CA_VALIDITY, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .sign(root_key, hashes.SHA256())
    )

    # Intermediate (MICA-style): may sign leaves only.
    mica_key = _new_key()
    mica = (
        _builder(
            _name("GridShare dev MICA"),
            root_name,
            mica_key.public_key(),
            root_key.public_key(),
            now + CA_VALIDITY,
            now,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .sign(root_key, hashes.SHA256())
    )

    # TLS server certificate.
    server_key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
    server = (
        _builder(
            _name(server_names[0] if server_names else server_ips[0]),
            mica.subject,
            server_key.public_key(),
            mica_key.public_key(),
            now + LEAF_VALIDITY,
            now,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(mica_key, hashes.SHA256())
    )

    _write_private(directory / ROOT_KEY_FILE, _key_pem(root_key))
    (directory / ROOT_CERT_FILE).write_bytes(_cert_pem(root))
    (directory / CA_FILE).write_bytes(_cert_pem(root))
    _write_private(directory / INTERMEDIATE_KEY_FILE, _key_pem(mica_key))
    (directory / INTERMEDIATE_CERT_FILE).write_bytes(_cert_pem(mica))
    _write_private(directory / SERVER_KEY_FILE, _key_pem(server_key))
    (directory / SERVER_CERT_FILE).write_bytes(_cert_pem(server, mica))

    issuer = _Issuer(cert=mica, key=mica_key)
    _issuer_cache.pop(directory, None)
    clients = [_issue_client(directory, issuer, f"device-{i}", "device", now) for i in range(1, devices + 1)]
    clients += [
        _issue_client(directory, issuer, f"aggregator-{i}", "aggregator", now)
        for i in range(1, aggregators + 1)
    ]
    pki = DevPki(
        directory=directory,
        ca_path=directory / CA_FILE,
        server_cert_path=directory / SERVER_CERT_FILE,
        server_key_path=directory / SERVER_KEY_FILE,
        clients=clients,
    )
    # Written last: its presence means "complete PKI here".
    _write_json_atomic(index, pki.to_json())
    return pki


def _remove_old_clients(directory: Path) -> None:
    """On --force, delete client files the old index lists so stale identities don't linger."""
    try:
        old = load_dev_pki(directory)
    except (OSError, ValueError, KeyError, TypeError):
        return
    for c in old.clients:
        for p in (c.cert_path, c.key_path):
            if p.parent == directory:
                p.unlink(missing_ok=True)


def load_dev_pki(directory: Path) -> DevPki:
    """Read ``directory/clients.json``; FileNotFoundError if there is no dev PKI there."""
    directory = Path(directory).expanduser().resolve()
    index = directory / INDEX_FILE
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no dev PKI in {directory} ({INDEX_FILE} missing); run `gridshare certs init {directory}`"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{index} is not valid JSON: {exc}") from exc
    return DevPki(
        directory=directory,
        ca_path=Path(data["ca"]),
        server_cert_path=Path(data["server_cert"]),
        server_key_path=Path(data["server_key"]),
        clients=[ClientCert.from_json(c) for c in data.get("clients", [])],
    )


def ensure_dev_pki(directory: Path) -> DevPki:
    """Load the dev PKI in ``directory``, creating it with defaults on first use (``gridshare serve``)."""
    directory = Path(directory).expanduser().resolve()
    if (directory / INDEX_FILE).exists():
        return load_dev_pki(directory)
    return create_dev_pki(directory)


def issue_client_certificates(directory: Path, names: list[str], kind: ClientKind) -> list[ClientCert]:
    """Issue several client certificates and update clients.json once (the simulator's bulk path)."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    pki = load_dev_pki(directory)
    existing = {c.name for c in pki.clients}
    seen: set[str] = set()
    for name in names:
        _check_client_name(name)
        if name in existing or name in seen:
            raise ValueError(f"a client named {name!r} already exists in {pki.directory}")
        seen.add(name)
    issuer = _load_issuer(pki.directory)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued = [_issue_client(pki.directory, issuer, name, kind, now) for name in names]
    pki.clients.extend(issued)
    _write_json_atomic(pki.directory / INDEX_FILE, pki.to_json())
    return issued


def issue_client_certificate(directory: Path, name: str, kind: ClientKind) -> ClientCert:
    """Issue one more client certificate from an existing dev PKI and append it to clients.json."""
    return issue_client_certificates(directory, [name], kind)[0]
