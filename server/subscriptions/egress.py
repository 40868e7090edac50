"""Where the server may send a Notification: public addresses only, never itself, never cloud metadata.

A subscriber names a URL and the server POSTs to it, so an unchecked URL would let any aggregator make
the server reach what only the server can reach: its own operator API, databases on the private
network, a cloud metadata service. The host is therefore resolved and every address it resolves to is
checked (IPv4 and IPv6, including IPv4 hidden in mapped, compatible, 6to4, Teredo and NAT64 forms);
loopback, private, link-local, unspecified, multicast, reserved and other non-public ranges are refused
unless an operator allow-lists a network (`notification_allowed_networks`). Cloud metadata addresses
and this service's own listeners are refused whatever the allow-list says.

The check runs when a subscription is made (a clear 400) and again before every delivery, since DNS
can change; delivery then connects to the very address it checked (see `delivery.py`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

from gridshare.core.settings import Settings

IPAddress = IPv4Address | IPv6Address

#: Instance metadata services (AWS incl. ECS and IPv6, GCP, Azure, Oracle, Alibaba, OpenStack).
METADATA_ADDRESSES = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "168.63.129.16",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
    )
)
#: NAT64 prefixes: the last 32 bits are an IPv4 address a translator will connect to.
_NAT64 = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))

#: Name resolution; a module attribute so a test can stand in for DNS answers that change.
getaddrinfo: Callable[..., list[tuple[Any, ...]]] = socket.getaddrinfo


class EgressRefused(Exception):
    """The destination may not be contacted; the message says why (safe to show the subscriber)."""


@dataclass(frozen=True)
class Destination:
    """A notification target: the URL's host and port, and the checked address to connect to."""

    scheme: str
    host: str
    port: int
    address: IPAddress


def embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would reach (mapped, compatible, 6to4, Teredo, NAT64)."""
    if isinstance(ip, IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    value = int(ip)
    if value >> 32 == 0 and value > 1:  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
        return IPv4Address(value)
    if any(ip in net for net in _NAT64):
        return IPv4Address(value & 0xFFFFFFFF)
    return None


def _category(ip: IPAddress) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def _is_this_host(ip: IPAddress) -> bool:
    """Whether `ip` is one of this machine's own addresses (a socket can be bound to it)."""
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET6 if isinstance(ip, IPv6Address) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((str(ip), 0))
        return True
    except OSError:
        return False


def address_problem(ip: IPAddress, port: int, settings: Settings) -> str | None:
    """Why the server must not connect to `ip`:`port`, or None."""
    inner = embedded_ipv4(ip)
    if inner is None:
        candidates: list[IPAddress] = [ip]
    elif isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        candidates = [inner]  # a mapped address is the IPv4 one, nothing more
    else:
        candidates = [inner, ip]
    shown = str(ip) if inner is None else f"{ip} (IPv4 {inner})"
    if any(c in METADATA_ADDRESSES for c in candidates):
        return f"{shown} is a cloud metadata address"
    if port in (settings.port, settings.operator_port) and any(_is_this_host(c) for c in candidates):
        return f"{shown} port {port} is this server's own listener"
    plain = inner if inner is not None else ip
    if any(plain in net for net in settings.notification_allowed_networks):
        return None
    for c in candidates:
        category = _category(c)
        if category is not None:
            return f"{shown} is {category} (not in notification_allowed_networks)"
    return None


def _split(uri: str) -> tuple[str, str, int]:
    parts = urlsplit(uri)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise EgressRefused("notificationURI must be an absolute http or https URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise EgressRefused("notificationURI has an invalid port") from None
    return parts.scheme, host, port


def resolve(uri: str, settings: Settings) -> Destination:
    """Resolve the URI's host once, refuse it if any address it resolves to is refused, else the first.

    Refusing on any bad address (not just the first) keeps a name that answers both a public and an
    inside address from getting through on the next lookup's order.
    """
    scheme, host, port = _split(uri)
    try:
        infos = getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise EgressRefused(f"notificationURI host {host!r} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        sockaddr = info[4]
        text = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 zone index names an interface, not an address
        ip = ip_address(text)
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # what the socket reaches; checked and connected to as IPv4
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise EgressRefused(f"notificationURI host {host!r} does not resolve")
    for ip in addresses:
        reason = address_problem(ip, port, settings)
        if reason is not None:
            raise EgressRefused(f"notificationURI host {host}: {reason}")
    return Destination(scheme, host, port, addresses[0])
