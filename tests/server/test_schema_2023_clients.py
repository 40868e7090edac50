"""Clients written to IEEE 2030.5-2023 put `schemaVer` on every body; GridShare speaks the 2018 schema.

py20305 (an independent CSIP-AUS client on PyPI) does so by default, and was refused with a 400 ("attribute
'schemaVer' is not allowed") when it registered an EndDevice. The attribute carries nothing the server
reads: such bodies are accepted, and nothing stored or served back carries it.
"""

from __future__ import annotations

from tests.support.bodies import NS as NS_DECL
from tests.support.bodies import SEP_XML, der_capability
from tests.support.servers import RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns"}


def test_a_2023_client_registers_and_reports_with_schema_ver(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    body = (
        f'<EndDevice {NS_DECL} schemaVer="3.0"><lFDI>{me.lfdi}</lFDI><sFDI>{me.sfdi}</sFDI>'
        f"<changedTime>0</changedTime></EndDevice>"
    ).encode()
    with server.client("device-1") as c:  # every body it receives is schema-validated (2018 + CSIP-AUS)
        r = c.post("/edev", content=body, headers=SEP_XML)
        assert r.status_code == 201, r.text
        edev = r.headers["location"]
        assert xml_ok(c.get(edev)).findtext("s:lFDI", namespaces=NS) == me.lfdi
        doc = der_capability(5000).replace(b"<DERCapability ", b'<DERCapability schemaVer="3.0" ')
        assert c.put(f"{edev}/der/1/dercap", content=doc, headers=SEP_XML).status_code == 204
        stored = c.get(f"{edev}/der/1/dercap")
        assert xml_ok(stored).get("schemaVer") is None and b"schemaVer" not in stored.content
