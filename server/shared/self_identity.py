"""Who this server is, for the SelfDevice resource: the identity of its own TLS certificate.

IEEE 2030.5 §8.4 defines SelfDevice as the device that serves the DeviceCapability (this server), so
its lFDI/sFDI are those of the certificate clients see in the handshake (§6.3.3: SHA-256 of the DER).
A client that pins the server by lFDI can then compare what /sdev says with what TLS proved.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from gridshare.certs.devpki import SERVER_CERT_FILE
from gridshare.certs.identity import DeviceIdentity, load_certificates
from gridshare.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerIdentity:
    """What SelfDevice and its DeviceInformation say about this server."""

    lfdi: str
    sfdi: int
    #: DeviceInformation.mfDate: when this server's identity (its certificate) was made.
    made_s: int
    #: DeviceInformation.swActTime: when the running software was started.
    started_s: int
    software_version: str
    hardware: str
    #: DeviceInformation.mfSerNum: the certificate's serial number, cut to String32.
    serial: str


def server_cert_path(settings: Settings) -> Path | None:
    """The certificate clients see: the configured one, else the dev PKI's (if it exists yet).

    Behind a TLS proxy the proxy's certificate is the one clients see; set `tls_cert_file` to it, or the
    server has no SelfDevice (the DeviceCapability link is optional, 2030.5 schema).
    """
    if settings.tls_cert_file:
        return settings.tls_cert_file
    if settings.behind_proxy or not settings.dev_pki:
        return None
    path = settings.pki_dir / SERVER_CERT_FILE
    return path if path.is_file() else None


def software_version() -> str:
    try:
        return f"GridShare {metadata.version('gridshare')}"[:32]
    except metadata.PackageNotFoundError:
        return "GridShare"


def load_server_identity(settings: Settings, started_s: int) -> ServerIdentity | None:
    """The identity of the server certificate, or None when there is none (or it cannot be read)."""
    path = server_cert_path(settings)
    if path is None:
        return None
    try:
        leaf = load_certificates(path)[0]  # a chain file starts with the leaf
    except (OSError, ValueError, IndexError) as exc:
        log.warning("no SelfDevice: cannot read the server certificate %s (%s)", path, exc)
        return None
    ident = DeviceIdentity.from_certificate(leaf)
    return ServerIdentity(
        lfdi=ident.lfdi,
        sfdi=ident.sfdi,
        made_s=int(leaf.not_valid_before_utc.timestamp()),
        started_s=started_s,
        software_version=software_version(),
        hardware=(platform.machine() or "unknown")[:32],
        serial=f"{leaf.serial_number:X}"[-32:],
    )
