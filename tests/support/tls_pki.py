"""Client certificates the server must refuse, made with the cryptography package.

`issue_leaf` signs a device-shaped leaf with the dev PKI's own MICA but chosen validity dates (an
expired one, one not valid yet); `foreign_client` is a well-formed device certificate from a whole
other PKI (a different SERCA), i.e. what an installer who loaded the wrong PKI would present.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridshare.certs.devpki import DevPki, create_dev_pki


def issue_leaf(
    pki: DevPki, out: Path, name: str, not_before: dt.datetime, not_after: dt.datetime
) -> tuple[Path, Path]:
    """A client certificate from the dev PKI's MICA with these dates, written to `out`: (chain, key)."""
    mica_cert = x509.load_pem_x509_certificate((pki.directory / "mica.pem").read_bytes())
    mica_key = serialization.load_pem_private_key((pki.directory / "mica.key").read_bytes(), password=None)
    assert isinstance(mica_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(mica_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(mica_key.public_key()), critical=False
        )
        .sign(mica_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
    cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + mica_cert.public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def expired_client(pki: DevPki, out: Path) -> tuple[Path, Path]:
    """Valid for a year that ended a month ago."""
    now = dt.datetime.now(dt.UTC)
    return issue_leaf(pki, out, "expired", now - dt.timedelta(days=400), now - dt.timedelta(days=30))


def not_yet_valid_client(pki: DevPki, out: Path) -> tuple[Path, Path]:
    """Valid only from next month (a device whose installer's clock ran ahead)."""
    now = dt.datetime.now(dt.UTC)
    return issue_leaf(pki, out, "future", now + dt.timedelta(days=30), now + dt.timedelta(days=400))


def foreign_client(directory: Path) -> tuple[Path, Path]:
    """A device certificate from another, unrelated 2030.5-shaped PKI."""
    other = create_dev_pki(directory, devices=1, aggregators=0)
    device = other.client("device-1")
    return device.cert_path, device.key_path
