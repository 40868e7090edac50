"""Who is calling: the peer certificate (from TLS, or from a trusted proxy) -> a ClientScope.

The scope is derived once per request here and handed to every query; routes never look at
certificates or lFDIs themselves.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from urllib.parse import unquote

from cryptography import x509
from fastapi import HTTPException, Request
from sqlalchemy.orm import Session

from certs.identity import DeviceIdentity
from store.models import ClientKind
from store.queries.identity import certificate_by_lfdi
from store.scope import ClientScope

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=65536)
def identity_from_pem(pem: str) -> DeviceIdentity:
    """lFDI/sFDI of a leaf certificate; cached because a connection repeats the same certificate."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    return DeviceIdentity.from_certificate(cert)


def _peer_pem(request: Request) -> str | None:
    ctx = request.app.state.ctx
    client_host = request.client.host if request.client else None
    if (
        ctx.settings.trusted_proxies
        and client_host
        and _is_trusted_proxy(client_host, ctx.settings.trusted_proxies)
    ):
        forwarded = request.headers.get(ctx.settings.proxy_cert_header)
        # nginx's $ssl_client_escaped_cert is URL-encoded PEM
        return unquote(forwarded) if forwarded else None
    tls = request.scope.get("extensions", {}).get("tls")
    chain = tls.get("client_cert_chain") if tls else None
    return chain[0] if chain else None


@functools.lru_cache(maxsize=256)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _is_trusted_proxy(host: str, proxies: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in _networks(tuple(proxies)))


def resolve_scope(session: Session, request: Request) -> ClientScope:
    """Map the peer certificate to a scope, or refuse with 403 and no data."""
    pem = _peer_pem(request)
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
    if request.app.state.ctx.settings.open_registration:
        return ClientScope(ClientKind.device, ident.lfdi, ident.sfdi)
    log.info("refused unknown certificate lFDI %s", ident.lfdi)
    raise HTTPException(403, "this client certificate is not registered")
