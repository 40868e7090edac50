"""SelfDevice is the server, and clients find their own EndDevice the standard ways.

IEEE 2030.5 §8.4: SelfDevice is the device that provides the DeviceCapability's resources (this
server), so following /dcap's SelfDeviceLink must give a SelfDevice whose lFDI is that of the certificate
the server presented in the TLS handshake; a client finds its own EndDevice through the EndDeviceList
(§8.5, Annex C.6) or the Location of its registration.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from urllib.parse import quote

import httpx

from gridshare.certs.devpki import DevPki
from gridshare.certs.identity import lfdi_from_der, sfdi_from_lfdi
from gridshare.core.clock import FixedClock
from gridshare.core.settings import Settings
from gridshare.server.app import create_asgi
from gridshare.server.shared.context import build_context
from tests.support.bodies import SEP_XML, end_device
from tests.support.servers import T0, RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns"}


def _presented_lfdi(server: RunningServer) -> str:
    """The lFDI of the certificate the server shows in the handshake (what a pinning client checks)."""
    host, port = server.base_url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        server.tls("device-1").wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return lfdi_from_der(der)


def test_self_device_link_leads_to_the_server_not_to_the_client(server: RunningServer) -> None:
    """Fails on the old code: the link named the client's own EndDevice (/edev/1)."""
    server_lfdi = _presented_lfdi(server)
    own = server.register("device-1")
    for name in ("device-1", "aggregator-1"):
        with server.client(name) as c:  # every body is validated against the 2030.5 + CSIP-AUS schemas
            dcap = xml_ok(c.get("/dcap"))
            href = dcap.find("s:SelfDeviceLink", NS).get("href")
            assert href != own
            sdev = xml_ok(c.get(href))
            assert sdev.tag == "{urn:ieee:std:2030.5:ns}SelfDevice"
            assert sdev.findtext("s:lFDI", namespaces=NS) == server_lfdi
            assert int(sdev.findtext("s:sFDI", namespaces=NS)) == sfdi_from_lfdi(server_lfdi)
            info = xml_ok(c.get(sdev.find("s:DeviceInformationLink", NS).get("href")))
            assert info.tag == "{urn:ieee:std:2030.5:ns}DeviceInformation"
            assert info.findtext("s:lFDI", namespaces=NS) == server_lfdi
            assert info.findtext("s:mfModel", namespaces=NS) == "GridShare"
            assert info.findtext("s:swVer", namespaces=NS).startswith("GridShare")
            head = c.head(href)
            assert head.status_code == 200 and head.content == b""
            # read-only (2030.5 §8.4.3): nothing may be written to the server's own description
            assert c.put(href, content=b"<SelfDevice/>", headers=SEP_XML).status_code == 405
            assert c.delete(href).status_code == 405


def test_a_device_finds_its_end_device_by_location_and_in_the_end_device_list(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    with server.client("device-1") as c:
        assert xml_ok(c.get("/edev", params={"l": 10})).get("all") == "0"  # not there: register
        r = c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML)
        assert r.status_code == 201
        location = r.headers["location"]
        assert xml_ok(c.get(location)).findtext("s:lFDI", namespaces=NS) == me.lfdi
        listing = xml_ok(c.get("/edev", params={"l": 10}))
        found = [e.get("href") for e in listing if int(e.findtext("s:sFDI", namespaces=NS)) == me.sfdi]
        assert found == [location]


def test_end_device_list_is_ordered_by_changed_time_then_sfdi(server: RunningServer) -> None:
    """2030.5 §8.5.2 Table 21: changedTime descending, then sFDI ascending (old code: newest id first)."""
    lfdis = ["5" * 40, "2" * 40, "9" * 40]  # registered in this order, all at the same time
    with server.client("aggregator-1") as c:
        for lfdi in lfdis:
            r = c.post("/edev", content=end_device(sfdi_from_lfdi(lfdi), lfdi), headers=SEP_XML)
            assert r.status_code == 201, r.text
        server.clock.advance(60)
        late = "7" * 40
        assert (
            c.post("/edev", content=end_device(sfdi_from_lfdi(late), late), headers=SEP_XML).status_code
            == 201
        )
        listing = xml_ok(c.get("/edev", params={"l": 10}))
        order = [e.findtext("s:lFDI", namespaces=NS) for e in listing][1:]  # after the aggregator's /edev/0
        assert order == [late, *sorted(lfdis, key=sfdi_from_lfdi)]
        # paging walks the same order one item at a time
        paged = [xml_ok(c.get("/edev", params={"s": s, "l": 1})) for s in range(1, 5)]
        assert [p[0].findtext("s:lFDI", namespaces=NS) for p in paged] == order


def test_without_a_certificate_of_its_own_the_server_links_no_self_device(
    tmp_path: Path, pki: DevPki
) -> None:
    """Behind a TLS proxy with no server certificate configured there is nothing true to say: the link
    is optional (2030.5 schema, DeviceCapability), so it is left out rather than pointed elsewhere."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'gs.db'}",
        behind_proxy=True,
        trusted_proxies=["127.0.0.1"],
    )
    ctx = build_context(settings, FixedClock(T0))
    leaf = pki.client("device-1").cert_path.read_text().split("-----END CERTIFICATE-----")[0]
    headers = {"x-client-cert": quote(leaf + "-----END CERTIFICATE-----\n")}

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_asgi(ctx), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gridshare") as c:
            return await c.get("/dcap", headers=headers), await c.get("/sdev", headers=headers)

    try:
        dcap, sdev = asyncio.run(ask())
    finally:
        ctx.engine.dispose()
    assert dcap.status_code == 200
    assert b"SelfDeviceLink" not in dcap.content and b"EndDeviceListLink" in dcap.content
    assert sdev.status_code == 404
