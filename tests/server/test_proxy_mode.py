"""Behind a TLS-terminating proxy: the forwarded certificate counts only when the proxy is trusted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn

from gridshare.certs.devpki import DevPki
from gridshare.core.settings import Settings
from gridshare.process.run import device_config_for
from gridshare.server.shared.context import build_context
from gridshare.server.shared.identity import is_trusted_proxy
from gridshare.store.queries.seed import seed_baseline
from tests.support.servers import free_port


def _plain_server(pki: DevPki, tmp_path: Path, trusted: list[str]) -> Iterator[str]:
    """The device endpoint exactly as `gridshare serve` configures uvicorn for it, in proxy mode."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        behind_proxy=True,
        trusted_proxies=trusted,
        port=free_port(),
    )
    ctx = build_context(settings)
    seed_baseline(ctx)
    config = device_config_for(ctx)
    config.host, config.port = "127.0.0.1", settings.port
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.engine.dispose()


@pytest.fixture
def trusted_proxy(pki: DevPki, tmp_path: Path) -> Iterator[str]:
    yield from _plain_server(pki, tmp_path, ["127.0.0.1/32"])


@pytest.fixture
def untrusted_proxy(pki: DevPki, tmp_path: Path) -> Iterator[str]:
    yield from _plain_server(pki, tmp_path, ["192.0.2.10"])


def _escaped_cert(pki: DevPki, name: str) -> str:
    leaf = pki.client(name).cert_path.read_text().split("-----END CERTIFICATE-----")[0]
    return quote(leaf + "-----END CERTIFICATE-----\n")


def test_forwarded_certificate_from_trusted_proxy_is_the_identity(trusted_proxy: str, pki: DevPki) -> None:
    me = pki.client("device-1")
    r = httpx.get(f"{trusted_proxy}/dcap", headers={"x-client-cert": _escaped_cert(pki, "device-1")})
    assert r.status_code == 200
    body = (
        f'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>{me.lfdi}</lFDI><sFDI>{me.sfdi}</sFDI>'
        "<changedTime>0</changedTime></EndDevice>"
    )
    r = httpx.post(
        f"{trusted_proxy}/edev",
        content=body,
        headers={"x-client-cert": _escaped_cert(pki, "device-1"), "content-type": "application/sep+xml"},
    )
    assert r.status_code == 201
    assert (
        me.lfdi
        in httpx.get(
            f"{trusted_proxy}{r.headers['location']}",
            headers={"x-client-cert": _escaped_cert(pki, "device-1")},
        ).text
    )
    assert httpx.get(f"{trusted_proxy}/dcap").status_code == 403  # no forwarded certificate


def test_header_from_an_untrusted_address_is_ignored(untrusted_proxy: str, pki: DevPki) -> None:
    r = httpx.get(f"{untrusted_proxy}/dcap", headers={"x-client-cert": _escaped_cert(pki, "device-1")})
    assert r.status_code == 403
    assert b"DeviceCapability" not in r.content and b"<Error " in r.content  # refused, nothing served


def test_x_forwarded_for_does_not_make_a_local_caller_a_trusted_proxy(
    untrusted_proxy: str, pki: DevPki
) -> None:
    """The proxy is 192.0.2.10; a caller on loopback claiming to be it through X-Forwarded-For is not.

    uvicorn by default believes X-Forwarded-For from 127.0.0.1 and rewrites the peer address before the
    application sees it; then a forged certificate header would pass as the proxy's.
    """
    headers = {"x-client-cert": _escaped_cert(pki, "device-1"), "x-forwarded-for": "192.0.2.10"}
    r = httpx.get(f"{untrusted_proxy}/dcap", headers=headers)
    assert r.status_code == 403
    assert b"DeviceCapability" not in r.content
    r = httpx.get(f"{untrusted_proxy}/dcap", headers={**headers, "forwarded": "for=192.0.2.10"})
    assert r.status_code == 403


def test_forwarded_for_from_the_trusted_proxy_does_not_hide_it(trusted_proxy: str, pki: DevPki) -> None:
    """nginx adds the device's address in X-Forwarded-For; the forwarded certificate must still count."""
    headers = {"x-client-cert": _escaped_cert(pki, "device-1"), "x-forwarded-for": "203.0.113.7"}
    assert httpx.get(f"{trusted_proxy}/dcap", headers=headers).status_code == 200


def test_trusted_proxy_addresses_match_as_a_dual_stack_listener_sees_them() -> None:
    assert is_trusted_proxy("::ffff:10.0.0.10", ("10.0.0.10",))  # IPv4 nginx, GridShare on "::"
    assert is_trusted_proxy("10.0.0.10", ("10.0.0.0/24",))
    assert not is_trusted_proxy("::ffff:10.0.0.11", ("10.0.0.10",))
    assert not is_trusted_proxy("2001:db8::1", ("10.0.0.10",))
    assert not is_trusted_proxy("nginx", ("10.0.0.10",))  # never a name


def test_proxy_mode_without_trusted_addresses_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(data_dir=tmp_path, behind_proxy=True)
