"""Mutual TLS for the 2030.5 endpoint, and a uvicorn protocol that tells the app who the peer is.

uvicorn does not pass the client certificate to the application, so `PeerCertHttpProtocol` reads it
from the TLS object once per connection and exposes it through the ASGI TLS extension
(`scope["extensions"]["tls"]["client_cert_chain"]`, PEM strings, leaf first).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: CSIP-AUS / 2030.5 mandate ECDHE-ECDSA-AES128-CCM8 on TLS 1.2 (design notes §2); the GCM and
#: ChaCha suites serve aggregator platforms whose TLS stacks lack CCM8. TLS 1.3 suites stay OpenSSL's.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-CCM8",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    )
)


def server_context(cert_file: Path, key_file: Path, ca_file: Path) -> ssl.SSLContext:
    """TLS 1.2+, client certificate required and verified against the trust anchor(s) in `ca_file`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    # 2030.5 device certificates carry no revocation info and may never expire; identity is the lFDI.
    ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return ctx


class PeerCertHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that adds the ASGI TLS extension to every request scope."""

    _tls_extension: dict[object, object] | None = None  # as uvicorn types an ASGI scope extension

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            self._tls_extension = None
            return
        der = ssl_object.getpeercert(binary_form=True)
        cipher = ssl_object.cipher()
        self._tls_extension = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None if der else "no client certificate",
            "tls_version": ssl_object.version(),
            "cipher_suite": cipher[0] if cipher else None,
        }

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls_extension is not None:
            self.scope["extensions"] = {"tls": self._tls_extension}
