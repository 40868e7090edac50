"""Every GET of a device's normal cycle is answered from the response cache after its first render,
with today's guarantees: the same bytes and headers, only to the client it was rendered for, refused
once the certificate is revoked, and never stale after a write that changes what it shows.

Each guarantee runs on SQLite and PostgreSQL (the `server` fixture), through real mutual TLS.
"""

from __future__ import annotations

import socket
import ssl

import httpx
from lxml import etree
from sqlalchemy import select

from gridshare.certs.identity import sfdi_from_lfdi
from gridshare.server.shared.metrics import device_metric_families
from gridshare.server.shared.render_cache import RenderCache
from gridshare.store.change_feed import feed_of
from gridshare.store.models import ClientKind, DerControl
from gridshare.store.queries.identity import register_certificate, revoke_certificate
from tests.support.bodies import (
    SEP_XML,
    connection_point,
    der_settings,
    end_device,
    meter_reading,
    mirror_usage_point,
)
from tests.support.engine import device_with_everything, statements
from tests.support.operator_api import OPERATOR, running_operator_api
from tests.support.servers import T0, RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


def _delivered(server: RunningServer) -> None:
    """Wait out the change notification of a write made outside the device port (PostgreSQL: a few
    ms; the bound docs/change-feed.md states); the device port's own writes need no such wait."""
    feed = feed_of(server.ctx.engine)
    assert feed is not None and feed.sync()


def _answer(c: httpx.Client, method: str, path: str, **params: int) -> tuple[int, dict[str, str], bytes]:
    r = c.request(method, path, params=params)
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "server")}
    return r.status_code, headers, r.content


def test_every_resource_of_the_cycle_is_answered_from_the_cache_as_rendered(server: RunningServer) -> None:
    _, _, paths = device_with_everything(server)
    with server.client("device-1") as c:
        rendered = {p: _answer(c, "GET", p) for p in paths}
        for p, (status, _, _) in rendered.items():
            assert status == 200, p
        with statements(server) as sql:
            again = {p: _answer(c, "GET", p) for p in paths}
            heads = {p: _answer(c, "HEAD", p) for p in paths}
        assert sql == [], "a repeated poll reached the database"
        assert again == rendered
        for p, (status, headers, body) in heads.items():
            assert (status, headers, body) == (200, rendered[p][1], b""), p
        # and a fresh render gives the same bytes: the cache adds nothing of its own
        server.ctx.cache = RenderCache()
        assert {p: _answer(c, "GET", p) for p in paths} == rendered


def test_head_first_fills_the_entry_get_answers_from(server: RunningServer) -> None:
    site_id = int(server.register("device-1").rsplit("/", 1)[1])
    with server.client("device-1") as c:
        status, head_headers, body = _answer(c, "HEAD", f"/edev/{site_id}")
        assert (status, body) == (200, b"")
        with statements(server) as sql:
            status, headers, body = _answer(c, "GET", f"/edev/{site_id}")
        assert sql == [] and status == 200 and headers == head_headers
        assert int(headers["content-length"]) == len(body) > 0


def test_another_client_never_gets_a_cached_body(server: RunningServer) -> None:
    site_id, _, paths = device_with_everything(server)
    server.register("device-2")
    with server.client("device-1") as one, server.client("device-2") as two:
        mine = {p: _answer(one, "GET", p) for p in paths}
        theirs = {p: _answer(two, "GET", p) for p in paths}
    for p in paths:
        if p == "/tm":  # the clock is the same for everyone
            assert theirs[p] == mine[p]
        elif p.startswith(f"/edev/{site_id}") or p.startswith("/mup/"):
            assert theirs[p][0] == 404, p  # device-1's resources do not exist for device-2
        else:
            assert theirs[p][2] != mine[p][2], p  # its own DeviceCapability, EndDeviceList, mirrors


def _edev_hrefs(c: httpx.Client) -> list[str]:
    listed = xml_ok(c.get("/edev", params={"l": 10}))
    return [e.get("href") for e in listed.findall("s:EndDevice", NS)]


def test_a_registration_re_renders_only_the_registering_clients_bodies(server: RunningServer) -> None:
    """A fleet registering (or coming back after an outage) must not empty every other device's cache:
    registration and NMI binding re-render the bodies of the client that sees the new site, and every
    other client's polls are still answered from memory, while the registering client sees its
    change on its next GET."""
    _, _, paths = device_with_everything(server)
    agg_device = "C0FFEE" + "0" * 33 + "2"
    with server.client("device-1") as one, server.client("aggregator-1") as agg:
        mine = {p: _answer(one, "GET", p) for p in paths}
        assert _edev_hrefs(agg) == ["/edev/0"]  # only the aggregator's own EndDevice, now cached
        # the aggregator registers a device and binds its NMI; device-2 registers itself
        r = agg.post("/edev", content=end_device(sfdi_from_lfdi(agg_device), agg_device), headers=SEP_XML)
        assert r.status_code == 201, r.text
        new_href = r.headers["location"]
        assert set(_edev_hrefs(agg)) == {"/edev/0", new_href}
        r = agg.put(f"{new_href}/cp", content=connection_point("4102345679"), headers=SEP_XML)
        assert r.status_code == 204, r.text
        assert (
            xml_ok(agg.get(f"{new_href}/cp")).findtext("c:connectionPointId", namespaces=NS) == "4102345679"
        )
        two = server.register("device-2")
        with server.client("device-2") as c:
            assert _edev_hrefs(c) == [two]
        with statements(server) as sql:
            again = {p: _answer(one, "GET", p) for p in paths}
        assert again == mine
        assert sql == [], "other clients' registrations sent device-1's polls to the store"


def test_a_revoked_certificate_is_refused_a_cached_body(server: RunningServer) -> None:
    _, _, paths = device_with_everything(server)
    me = server.pki.client("device-1")
    with server.write() as s:  # the operator lists its certificate
        now_s = int(server.clock.now())
        register_certificate(
            s, lfdi=me.lfdi, sfdi=me.sfdi, kind=ClientKind.device, aggregator_id=None, now_s=now_s
        )
    with server.client("device-1") as c:
        for p in paths:
            xml_ok(c.get(p))
        for p in paths:
            xml_ok(c.get(p))  # cached
        with server.write() as s:
            assert revoke_certificate(s, me.lfdi, int(server.clock.now()))
        _delivered(server)
        for p in paths:
            assert c.get(p).status_code == 403, p
            assert c.head(p).status_code == 403, p


def _text(c: httpx.Client, path: str, xpath: str) -> str | None:
    return xml_ok(c.get(path)).findtext(xpath, namespaces=NS)


def test_writes_show_on_the_next_get(server: RunningServer) -> None:
    site_id, _, paths = device_with_everything(server)
    me = server.pki.client("device-1")
    program = next(p for p in paths if "/derp/" in p and p.count("/") == 4)
    with server.client("device-1") as c:
        for p in paths:
            xml_ok(c.get(p))  # everything cached
        # the device moves its NMI
        assert _text(c, f"/edev/{site_id}/cp", "c:connectionPointId") == "4102345678"
        r = c.put(f"/edev/{site_id}/cp", content=connection_point("4102345679"), headers=SEP_XML)
        assert r.status_code == 204, r.text
        assert _text(c, f"/edev/{site_id}/cp", "c:connectionPointId") == "4102345679"
        # the device changes its DER settings (a report: no publication, the site's key instead)
        assert _text(c, f"/edev/{site_id}/der/1/derg", "s:setMaxW/s:value") == "4600"
        r = c.put(f"/edev/{site_id}/der/1/derg", content=der_settings(5200, T0), headers=SEP_XML)
        assert r.status_code == 204, r.text
        assert _text(c, f"/edev/{site_id}/der/1/derg", "s:setMaxW/s:value") == "5200"
        # a second mirror: the MirrorUsagePoint list and DeviceCapability's count move
        mups_all = xml_ok(c.get("/mup")).get("all")
        dcap_mups = xml_ok(c.get("/dcap")).find("s:MirrorUsagePointListLink", NS).get("all")
        r = c.post("/mup", content=mirror_usage_point("33" * 16, me.lfdi, "44" * 16, T0, 1), headers=SEP_XML)
        assert r.status_code == 201, r.text
        assert int(xml_ok(c.get("/mup")).get("all")) == int(mups_all) + 1
        assert (
            int(xml_ok(c.get("/dcap")).find("s:MirrorUsagePointListLink", NS).get("all"))
            == int(dcap_mups) + 1
        )
        # a reading of a new MirrorMeterReading adds it to its mirror's body
        mup = r.headers["location"]
        assert b"55" * 16 not in c.get(mup).content
        reading_type = (
            b"<ReadingType><commodity>1</commodity><flowDirection>19</flowDirection><kind>37</kind>"
            b"<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType></MirrorMeterReading>"
        )
        body = meter_reading("55" * 16, T0, 7).replace(b"</MirrorMeterReading>", reading_type)
        r = c.post(mup, content=body, headers=SEP_XML)
        assert r.status_code == 201, r.text
        assert b"55" * 16 in c.get(mup).content
        # the operator renames the program
        with running_operator_api(server.ctx) as api, api.client(OPERATOR) as op:
            program_id = int(program.rsplit("/", 1)[1])
            r = op.patch(f"/programs/{program_id}", json={"description": "renamed by the operator"})
            assert r.status_code == 200, r.text
        _delivered(server)
        assert _text(c, program, "s:description") == "renamed by the operator"
        derp_list = next(p for p in paths if p.endswith("/derp") and "/fsa/" in p)
        assert xml_ok(c.get(derp_list)).findtext("s:DERProgram/s:description", namespaces=NS) == (
            "renamed by the operator"
        )


def test_time_and_control_status_are_never_served_past_their_horizon(server: RunningServer) -> None:
    _, control_id, paths = device_with_everything(server)
    program = next(p for p in paths if "/derp/" in p and p.count("/") == 4)
    with server.client("device-1") as c:
        assert _text(c, "/tm", "s:currentTime") == str(T0)
        active = xml_ok(c.get(f"{program}/actderc"))
        assert active.get("all") == "1"
        server.clock.advance(1)
        assert _text(c, "/tm", "s:currentTime") == str(T0 + 1)
        server.clock.advance(540)  # past the first control's end: it leaves the active list
        assert xml_ok(c.get(f"{program}/actderc")).get("all") == "0"
        assert c.get(f"{program}/derc/{control_id}").status_code == 404
        server.clock.advance(60)  # the second control starts
        assert xml_ok(c.get(f"{program}/actderc")).get("all") == "1"
        server.clock.advance(-1200)  # a clock set back never gets a later second's Time
        assert _text(c, "/tm", "s:currentTime") == str(T0 - 599)


def test_paging_parameters_are_distinct_entries(server: RunningServer) -> None:
    _, _, paths = device_with_everything(server)
    program = next(p for p in paths if "/derp/" in p and p.count("/") == 4)
    pages = [{}, {"l": 10}, {"s": 1, "l": 10}, {"a": T0 + 600, "l": 10}, {"l": 0}]
    with server.client("device-1") as c:
        for path in (f"{program}/derc", "/edev"):
            cached = [_answer(c, "GET", path, **p) for p in pages]
            cached = [_answer(c, "GET", path, **p) for p in pages]  # second round: from the cache
            server.ctx.cache = RenderCache()
            fresh = [_answer(c, "GET", path, **p) for p in pages]
            assert cached == fresh, path
        bodies = [b for _, _, b in fresh]
        assert len(set(bodies)) >= 3
    with server.ctx.sessions() as s:
        assert s.execute(select(DerControl)).scalars().first() is not None
    assert etree.fromstring(bodies[1]).get("results") is not None


def _cache_counts() -> dict[tuple[str, str], float]:
    family = next(f for f in device_metric_families() if f.name == "gridshare_cache_requests")
    return {(s.labels["resource"], s.labels["result"]): s.value for s in family.samples}


def test_hits_and_misses_are_counted_per_resource_for_operators(server: RunningServer) -> None:
    site_id, _, _ = device_with_everything(server)
    before = _cache_counts()
    with server.client("device-1") as c:
        for _ in range(3):
            xml_ok(c.get("/dcap"))
            xml_ok(c.get(f"/edev/{site_id}"))

    def grew(resource: str, result: str) -> float:
        return _cache_counts().get((resource, result), 0.0) - before.get((resource, result), 0.0)

    # three polls of each: the first renders (a miss), the next two are answered from memory
    assert grew("DeviceCapability", "hit") == 2 and grew("DeviceCapability", "miss") == 1
    assert grew("EndDevice", "hit") == 2 and grew("EndDevice", "miss") == 1


def _raw_answers(sock: ssl.SSLSocket, methods: list[str]) -> list[tuple[int, bytes]]:
    """(status, body) of each answer on one connection, in order (a HEAD's has no body)."""
    buffered, answers = b"", []
    for method in methods:
        while b"\r\n\r\n" not in buffered:
            buffered += sock.recv(65536)
        head, _, buffered = buffered.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0 if method == "HEAD" else int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(buffered) < length:
            buffered += sock.recv(65536)
        answers.append((status, buffered[:length]))
        buffered = buffered[length:]
    return answers


def test_cached_and_uncached_answers_keep_their_order_on_one_connection(server: RunningServer) -> None:
    """Cached GETs are written at once, others by the application: requests pipelined on one keep-alive
    connection are still answered in the order they were sent, each with its own body."""
    site_id, _, _ = device_with_everything(server)
    with server.client("device-1") as c:
        expected = {p: c.get(p) for p in ("/dcap", f"/edev/{site_id}", f"/edev/{site_id}/fsa")}
        c.get("/dcap")  # cached now; the FSA list is not yet asked twice
    server.ctx.cache = RenderCache()
    plan = [
        ("GET", "/dcap"),  # the application (the cache was just emptied)
        ("GET", f"/edev/{site_id}"),
        ("GET", "/dcap"),  # from the cache
        ("HEAD", "/dcap"),
        ("GET", f"/edev/{site_id}/fsa"),
        ("GET", f"/edev/{site_id}"),
    ]
    with (
        socket.create_connection(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1])), timeout=20) as raw,
        server.tls("device-1").wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"".join(f"{m} {p} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode() for m, p in plan))
        answers = _raw_answers(sock, [m for m, _ in plan])
    assert answers == [(200, b"" if method == "HEAD" else expected[path].content) for method, path in plan]
