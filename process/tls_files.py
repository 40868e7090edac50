"""TLS material for `gridshare serve`: the configured files, or a development PKI made on first start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridshare.certs.devpki import ensure_dev_pki
from gridshare.core.settings import Settings


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path


def tls_files(settings: Settings) -> TlsFiles:
    """Configured TLS files, or a development PKI generated in data_dir/pki on first start."""
    if settings.tls_cert_file and settings.tls_key_file and settings.tls_ca_file:
        return TlsFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)
    if not settings.dev_pki:
        raise SystemExit(
            "set GRIDSHARE_TLS_CERT_FILE, GRIDSHARE_TLS_KEY_FILE and GRIDSHARE_TLS_CA_FILE "
            "(or GRIDSHARE_DEV_PKI=true for a development PKI)"
        )
    pki = ensure_dev_pki(settings.pki_dir)
    return TlsFiles(pki.server_cert_path, pki.server_key_path, pki.ca_path)
