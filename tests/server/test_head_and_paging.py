"""HEAD answers like GET without a body; lists page with `s` and `l` (default l=1, capped by settings)."""

from __future__ import annotations

from gridshare.certs.identity import sfdi_from_lfdi
from tests.support.bodies import SEP_XML, end_device
from tests.support.servers import RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns"}


def test_head_matches_get_without_a_body(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    with server.client("device-1") as c:
        r = c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML)
        assert r.status_code == 201, r.text
        edev_href = r.headers["location"]
        fsa_href = xml_ok(c.get(edev_href)).find("s:FunctionSetAssignmentsListLink", NS).get("href")
        fsa = xml_ok(c.get(fsa_href)).find("s:FunctionSetAssignments", NS)
        program = xml_ok(c.get(fsa.find("s:DERProgramListLink", NS).get("href"))).find("s:DERProgram", NS)
        derc_href = program.find("s:DERControlListLink", NS).get("href")
        for path in ("/dcap", "/tm", "/edev", edev_href, fsa_href, derc_href):
            # HEAD before and after a GET: the polled DERControlList may be answered from a cache
            first_head, got, head = c.head(path), c.get(path), c.head(path)
            assert first_head.headers.get("content-length") == head.headers.get("content-length"), path
            assert first_head.status_code == 200 and first_head.content == b"", path
            assert got.status_code == head.status_code == 200, (path, got.status_code, head.status_code)
            assert got.content, path
            assert head.content == b"", f"HEAD {path} sent a body"
            assert head.headers["content-type"].startswith("application/sep+xml"), path
            assert head.headers["content-type"] == got.headers["content-type"], path
            assert head.headers.get("content-length") == got.headers.get("content-length"), path
        missing = "/edev/999999"
        assert c.get(missing).status_code == c.head(missing).status_code == 404


def test_end_device_list_paging(server: RunningServer) -> None:
    lfdis = [f"C0FFEE{i:02X}" + "5" * 32 for i in range(1, 5)]
    expected_all = len(lfdis) + 1  # the aggregator's own /edev/0 is listed too
    with server.client("aggregator-1") as c:
        for lfdi in lfdis:
            r = c.post("/edev", content=end_device(sfdi_from_lfdi(lfdi), lfdi), headers=SEP_XML)
            assert r.status_code == 201, r.text

        default = xml_ok(c.get("/edev"))
        assert default.get("all") == str(expected_all)
        assert default.get("results") == "1"
        assert len(default.findall("s:EndDevice", NS)) == 1

        seen: list[str] = []
        lfdis_seen: set[str] = set()
        for start in range(expected_all):
            page = xml_ok(c.get("/edev", params={"s": start, "l": 1}))
            assert page.get("all") == str(expected_all) and page.get("results") == "1", start
            [item] = page.findall("s:EndDevice", NS)
            seen.append(item.get("href"))
            lfdis_seen.add(item.findtext("s:lFDI", namespaces=NS))
        assert len(set(seen)) == expected_all, seen
        assert "/edev/0" in seen
        assert set(lfdis) <= lfdis_seen
        past_end = xml_ok(c.get("/edev", params={"s": expected_all, "l": 1}))
        assert past_end.get("results") == "0" and past_end.findall("s:EndDevice", NS) == []
        assert past_end.get("all") == str(expected_all)

        # a limit above the cap is answered, not refused; with the default cap everything fits
        cap = server.ctx.settings.list_limit_cap
        everything = xml_ok(c.get("/edev", params={"l": cap + 1}))
        assert everything.get("results") == str(min(expected_all, cap))
        assert sorted(e.get("href") for e in everything.findall("s:EndDevice", NS)) == sorted(seen)
        # with a cap below the list size the cap is what a client gets
        server.ctx.settings.list_limit_cap = 3
        capped = xml_ok(c.get("/edev", params={"l": 3 + 1}))
        assert capped.get("results") == "3" and len(capped.findall("s:EndDevice", NS)) == 3
        assert capped.get("all") == str(expected_all)
        huge = xml_ok(c.get("/edev", params={"l": 10**11}))
        assert huge.get("results") == "3"

        for params in ({"s": "-1"}, {"l": "abc"}, {"l": "-5"}, {"s": "1.5"}):
            r = c.get("/edev", params=params)
            assert r.status_code == 400, (params, r.status_code, r.text)
            assert r.text.strip()


def test_superscript_digit_in_a_page_parameter_is_refused(server: RunningServer) -> None:
    with server.client("aggregator-1") as c:
        for name in ("s", "l", "a"):
            r = c.get("/edev", params={name: "²"})
            assert r.status_code == 400, (name, r.status_code, r.text)
            assert r.text.strip()
