"""IEEE 2030.5 lFDI/sFDI derivation, checked against the spec's worked example and independent hashing."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from gridshare.certs.identity import (
    DeviceIdentity,
    check_digit,
    is_valid_sfdi,
    lfdi_from_certificate,
    lfdi_from_der,
    load_certificates,
    normalize_lfdi,
    sfdi_from_lfdi,
    with_check_digit,
)

SPEC_LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
SPEC_SFDI = 167261211391


def _self_signed(cn: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_spec_example_sfdi() -> None:
    assert sfdi_from_lfdi(SPEC_LFDI) == SPEC_SFDI
    assert is_valid_sfdi(SPEC_SFDI)


def test_spec_example_lower_case_lfdi_gives_same_sfdi() -> None:
    assert sfdi_from_lfdi(SPEC_LFDI.lower()) == SPEC_SFDI


def test_check_digit_and_registration_pin() -> None:
    assert check_digit(11111) == 5
    assert with_check_digit(11111) == 111115
    # Digit sum already a multiple of 10 -> check digit 0, not 10.
    assert check_digit(55) == 0
    assert with_check_digit(0) == 0


def test_is_valid_sfdi_rejects_wrong_check_digit_and_out_of_range() -> None:
    assert not is_valid_sfdi(SPEC_SFDI + 1)
    assert not is_valid_sfdi(-1)
    largest = 0xFFFFFFFFF * 10 + check_digit(0xFFFFFFFFF)
    assert is_valid_sfdi(largest)
    assert not is_valid_sfdi(with_check_digit(0xFFFFFFFFF + 1))


def test_lfdi_of_generated_certificate_matches_hashlib() -> None:
    cert = _self_signed("device-under-test")
    der = cert.public_bytes(Encoding.DER)
    expected = hashlib.sha256(der).hexdigest()[:40].upper()
    assert lfdi_from_der(der) == expected
    assert lfdi_from_certificate(cert) == expected
    ident = DeviceIdentity.from_der(der)
    assert ident.lfdi == expected
    assert ident.sfdi == int(expected[:9], 16) * 10 + check_digit(int(expected[:9], 16))


def test_device_identity_is_frozen() -> None:
    ident = DeviceIdentity(lfdi=SPEC_LFDI, sfdi=SPEC_SFDI)
    with pytest.raises(AttributeError):
        ident.lfdi = "0" * 40  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [SPEC_LFDI[:39], SPEC_LFDI + "0", "G" + SPEC_LFDI[1:], SPEC_LFDI[:20] + " " + SPEC_LFDI[21:], ""],
)
def test_normalize_lfdi_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError, match="lFDI"):
        normalize_lfdi(bad)


def test_normalize_lfdi_accepts_lower_case_and_whitespace() -> None:
    assert normalize_lfdi(f"  {SPEC_LFDI.lower()}\n") == SPEC_LFDI


def test_load_certificates_keeps_chain_order_and_identity_uses_leaf(tmp_path: Path) -> None:
    leaf, other = _self_signed("leaf"), _self_signed("other")
    pem = leaf.public_bytes(Encoding.PEM) + other.public_bytes(Encoding.PEM)
    path = tmp_path / "chain.pem"
    path.write_bytes(pem)
    for source in (path, str(path), pem, pem.decode()):
        certs = load_certificates(source)
        assert [c.subject for c in certs] == [leaf.subject, other.subject]
    leaf_lfdi = hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()[:40].upper()
    assert lfdi_from_certificate(load_certificates(path)[0]) == leaf_lfdi


def test_load_certificates_reads_der_and_rejects_garbage(tmp_path: Path) -> None:
    cert = _self_signed("der")
    der_path = tmp_path / "c.der"
    der_path.write_bytes(cert.public_bytes(Encoding.DER))
    assert load_certificates(der_path)[0] == cert
    junk = tmp_path / "junk.pem"
    junk.write_text("hello, not a certificate\n")
    with pytest.raises(ValueError):
        load_certificates(junk)
