"""IEEE 2030.5 device identity: the lFDI/sFDI derived from a client's certificate.

The server never trusts a self-declared identity; it recomputes the lFDI from the leaf
certificate presented in the TLS handshake, so these helpers are the single source of truth.
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = [
    "LFDI_HEX_DIGITS",
    "MAX_SFDI",
    "DeviceIdentity",
    "check_digit",
    "is_valid_sfdi",
    "lfdi_from_certificate",
    "lfdi_from_der",
    "load_certificates",
    "normalize_lfdi",
    "sfdi_from_lfdi",
    "with_check_digit",
]

#: An lFDI is the first 160 bits of SHA-256, i.e. 40 hex digits.
LFDI_HEX_DIGITS = 40
#: The sFDI is built from the first 36 bits (9 hex digits) of the lFDI plus one check digit.
_SFDI_HEX_DIGITS = 9
#: Largest sFDI: 0xFFFFFFFFF followed by its check digit (at most 12 decimal digits).
MAX_SFDI = 0xFFFFFFFFF * 10 + 9

_HEX = frozenset(string.hexdigits)


def lfdi_from_der(der: bytes) -> str:
    """Return the lFDI (upper-case hex) of a DER-encoded certificate.

    2030.5 defines it as the leftmost 160 bits of SHA-256 over the whole certificate.
    """
    if not der:
        raise ValueError("cannot compute an lFDI from an empty certificate")
    return hashlib.sha256(der).hexdigest()[:LFDI_HEX_DIGITS].upper()


def lfdi_from_certificate(cert: x509.Certificate) -> str:
    """Return the lFDI of a parsed certificate (hashes its exact DER encoding)."""
    return lfdi_from_der(cert.public_bytes(Encoding.DER))


def check_digit(number: int) -> int:
    """Return the 2030.5 check digit: the digit that makes the decimal digit sum a multiple of 10.

    Used both for the sFDI and for the registration PIN, so a mistyped digit is caught.
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ValueError(f"check digit needs a non-negative integer, got {number!r}")
    return (10 - sum(int(d) for d in str(number)) % 10) % 10


def with_check_digit(number: int) -> int:
    """Append the check digit to ``number`` (e.g. PIN 11111 -> 111115)."""
    return number * 10 + check_digit(number)


def normalize_lfdi(value: str) -> str:
    """Return ``value`` as a canonical lFDI (40 upper-case hex digits) or raise ValueError.

    lFDIs arrive from URLs, config files and users in either case, so compare only normalized forms.
    """
    if not isinstance(value, str):
        raise ValueError(f"lFDI must be a string of {LFDI_HEX_DIGITS} hex digits, got {type(value).__name__}")
    text = value.strip()
    if len(text) != LFDI_HEX_DIGITS:
        raise ValueError(
            f"lFDI must be exactly {LFDI_HEX_DIGITS} hex digits, got {len(text)} characters: {text!r}"
        )
    if not _HEX.issuperset(text):
        raise ValueError(f"lFDI must contain only hex digits (0-9, A-F): {text!r}")
    return text.upper()


def sfdi_from_lfdi(lfdi: str) -> int:
    """Return the sFDI for an lFDI: its first 36 bits in decimal followed by a check digit."""
    prefix = int(normalize_lfdi(lfdi)[:_SFDI_HEX_DIGITS], 16)
    return with_check_digit(prefix)


def is_valid_sfdi(sfdi: int) -> bool:
    """True if ``sfdi`` is in range for a 36-bit prefix and its last digit is the right check digit."""
    if isinstance(sfdi, bool) or not isinstance(sfdi, int):
        return False
    if not 0 <= sfdi <= MAX_SFDI:
        return False
    return check_digit(sfdi // 10) == sfdi % 10


def load_certificates(pem_or_path: bytes | str | os.PathLike[str]) -> list[x509.Certificate]:
    """Load every certificate from PEM data, a PEM file or a DER file, in file order (leaf first).

    ``bytes`` are treated as certificate data; a ``str`` starting with ``-----BEGIN`` as PEM text;
    anything else as a path. Raises ValueError if no certificate can be parsed.
    """
    if isinstance(pem_or_path, bytes):
        data, source = pem_or_path, "certificate data"
    elif isinstance(pem_or_path, str) and pem_or_path.lstrip().startswith("-----BEGIN"):
        data, source = pem_or_path.encode("ascii"), "PEM text"
    else:
        path = Path(pem_or_path)
        data, source = path.read_bytes(), str(path)

    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ValueError(f"no valid PEM certificate in {source}: {exc}") from exc
    else:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError as exc:
            raise ValueError(f"{source} is neither a PEM nor a DER certificate") from exc
    if not certs:
        raise ValueError(f"no certificate found in {source}")
    return certs


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """The pair of identifiers 2030.5 derives from a device's leaf certificate."""

    lfdi: str
    sfdi: int

    @classmethod
    def from_der(cls, der: bytes) -> DeviceIdentity:
        """Identity of a DER certificate; pass the leaf only, never a chain."""
        lfdi = lfdi_from_der(der)
        return cls(lfdi=lfdi, sfdi=sfdi_from_lfdi(lfdi))

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> DeviceIdentity:
        """Identity of a parsed (leaf) certificate."""
        return cls.from_der(cert.public_bytes(Encoding.DER))
