"""Who is calling: the peer certificate (from TLS, or from a trusted proxy) -> a ClientScope.

The scope is derived once per request here and handed to every query; routes never look at
certificates or lFDIs themselves. Resolved scopes are cached per publication generation: any
change to certificates (registration, revocation) bumps the generation, so a revoked certificate
is refused on its very next request. A device's own reports (telemetry, Responses, LogEvents, DER
documents) bump only the activity counter, so they do not throw every client's scope away.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from fastapi import HTTPException
from sqlalchemy.orm import Session

from gridshare.certs.identity import DeviceIdentity
from gridshare.core.settings import Settings
from gridshare.store.models import ClientKind
from gridshare.store.queries.identity import certificate_by_lfdi
from gridshare.store.scope import ClientScope

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=65536)
def identity_from_pem(pem: str) -> DeviceIdentity:
    """lFDI/sFDI of a leaf certificate; cached because a connection repeats the same certificate."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    return DeviceIdentity.from_certificate(cert)


def peer_pem(asgi_scope: Mapping[str, Any], settings: Settings) -> str | None:
    """The client's leaf certificate as PEM: from our TLS extension, or forwarded by a trusted proxy."""
    client = asgi_scope.get("client")
    if settings.trusted_proxies and client and is_trusted_proxy(client[0], tuple(settings.trusted_proxies)):
        wanted = _header_name(settings.proxy_cert_header)
        for name, value in asgi_scope.get("headers", ()):
            if name == wanted:
                return forwarded_pem(value)
        return None
    tls = asgi_scope.get("extensions", {}).get("tls")
    chain = tls.get("client_cert_chain") if tls else None
    return chain[0] if chain else None


@functools.lru_cache(maxsize=65536)
def forwarded_pem(value: bytes) -> str | None:
    """The PEM in a proxy's certificate header (nginx's $ssl_client_escaped_cert is URL-encoded).

    Decoded once per device: a device sends the same header with every request, and percent-decoding
    its kilobyte cost more than the rest of a cached poll (py-spy, conversation behind nginx)."""
    return unquote(value.decode("latin-1")) or None


@functools.lru_cache(maxsize=16)
def _header_name(setting: str) -> bytes:
    return setting.lower().encode()


@functools.lru_cache(maxsize=1024)
def is_trusted_proxy(host: str, proxies: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # A dual-stack listener ("::") sees an IPv4 proxy as ::ffff:a.b.c.d; compare it as the IPv4 it is.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(p, strict=False) for p in proxies)


class ScopeCache:
    """Resolved scopes for the current publication generation only."""

    def __init__(self) -> None:
        self._generation = -1
        self._scopes: dict[str, ClientScope] = {}
        self._lock = threading.Lock()

    def get(self, pem: str, generation: int) -> ClientScope | None:
        with self._lock:
            return self._scopes.get(pem) if generation == self._generation else None

    def put(self, pem: str, generation: int, scope: ClientScope) -> None:
        with self._lock:
            if generation != self._generation:
                self._scopes.clear()
                self._generation = generation
            self._scopes[pem] = scope


def resolve_scope(session: Session, settings: Settings, pem: str | None) -> ClientScope:
    """Map the peer certificate to a scope, or refuse with 403 and no data."""
    if pem is None:
        raise HTTPException(403, "a client certificate is required")
    try:
        ident = identity_from_pem(pem)
    except ValueError:
        raise HTTPException(403, "the client certificate could not be read") from None
    registered = certificate_by_lfdi(session, ident.lfdi)
    if registered is not None:
        if registered.revoked_s is not None:
            raise HTTPException(403, "this client certificate has been revoked")
        if registered.kind is ClientKind.aggregator:
            return ClientScope(ClientKind.aggregator, ident.lfdi, ident.sfdi, registered.aggregator_id)
        return ClientScope(ClientKind.device, ident.lfdi, ident.sfdi)
    if settings.open_registration:
        return ClientScope(ClientKind.device, ident.lfdi, ident.sfdi)
    log.info("refused unknown certificate lFDI %s", ident.lfdi)
    raise HTTPException(403, "this client certificate is not registered")
