"""Every device-port write and path, fed documents generated from the 2030.5 + CSIP-AUS schemas.

Bodies come from `tests/support/xsd_strategies.py` (hypothesis strategies built by walking the XSDs): schema-
valid documents of every resource a client may POST or PUT, the same broken in one place, another
resource's document, or junk bytes. Paths take real ids, ids beyond the database's integers, negative
and non-numeric ones, with junk query strings; requests come from two registered devices, one that is
not registered, and an aggregator, over real mutual TLS. For every request, on SQLite and PostgreSQL:

- never a 5xx;
- every 4xx is a 2030.5 Error document;
- a refused request, and every read, leaves the store exactly as it was (every table compared);
- every 2xx XML body is schema-valid (the test client checks each one).

`GRIDSHARE_DEVICE_FUZZ_REQUESTS` sets the number of requests per database (default 500, CI-sized: about
a minute); any other number also draws a fresh random sequence instead of the fixed CI one.
`GRIDSHARE_DEVICE_FUZZ_VERBOSE=1` prints every refusal and its reason (to see what the run reached).
"""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lxml import etree
from sqlalchemy import select, text

from gridshare.certs.identity import sfdi_from_lfdi
from gridshare.core.mrid import new_mrid
from gridshare.server.routes.end_devices import nmi_checksum
from gridshare.store.models import Base, DerProgram, Site
from gridshare.store.queries.controls import ControlValues, create_control
from tests.support.bodies import SEP_XML, connection_point, end_device, meter_reading, mirror_usage_point
from tests.support.servers import T0, RunningServer
from tests.support.xsd_strategies import Documents

DEFAULT_REQUESTS = 500
REQUESTS = int(os.environ.get("GRIDSHARE_DEVICE_FUZZ_REQUESTS", str(DEFAULT_REQUESTS)))
SEP = "urn:ieee:std:2030.5:ns"
CSIP_CP = "{https://csipaus.org/ns}ConnectionPoint"
AGG_DEVICE_LFDI = "C0FFEE" + "0" * 33 + "1"
MUP_MRID, MMR_MRID, MMR2_MRID = (
    "0A1B2C3D4E5F60718293A4B5C6D7E8F9",
    "0F1E2D3C4B5A69788796A5B4C3D2E1F0",
    "22" * 16,
)
NMI = "4102345678"
HUGE = [2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30]
CLIENTS = ("device-1", "device-2", "device-3", "aggregator-1")


@dataclass
class Known:
    """Ids and identifiers that exist, so generated requests reach the code behind the first lookup.

    `mups` and `subscription` follow what the run creates (a deleted MirrorUsagePoint comes back under
    another id when a device posts it again).
    """

    sites: dict[str, int]
    mups: dict[str, int]
    control_mrid: str
    subscription: int
    lfdis: list[str]

    def learn(self, client: str, method: str, path: str, response: httpx.Response) -> None:
        location = response.headers.get("location", "")
        if response.status_code == 201 and method == "POST" and path == "/mup":
            self.mups[client] = int(location.rsplit("/", 1)[1])
        elif response.status_code == 201 and path.endswith("/sub") and "/sub/" in location:
            self.subscription = int(location.rsplit("/", 1)[1])


def _seed(server: RunningServer) -> Known:
    sites = {name: int(server.register(name).rsplit("/", 1)[1]) for name in ("device-1", "device-2")}
    with server.client("aggregator-1") as c:
        body = end_device(sfdi_from_lfdi(AGG_DEVICE_LFDI), AGG_DEVICE_LFDI)
        r = c.post("/edev", content=body, headers=SEP_XML)
        assert r.status_code == 201, r.text
        sites["aggregator-1"] = int(r.headers["location"].rsplit("/", 1)[1])
    mups = {}
    for name, lfdi in (("device-1", server.pki.client("device-1").lfdi), ("aggregator-1", AGG_DEVICE_LFDI)):
        with server.client(name) as c:
            assert (
                c.put(
                    f"/edev/{sites[name]}/cp",
                    content=connection_point(NMI if name == "device-1" else "QB00000001"),
                    headers=SEP_XML,
                ).status_code
                == 204
            )
            mmr = MMR_MRID if name == "device-1" else MMR2_MRID
            r = c.post(
                "/mup", content=mirror_usage_point(MUP_MRID, lfdi, mmr, T0 - 300, 1500), headers=SEP_XML
            )
            assert r.status_code == 201, r.text
            mups[name] = int(r.headers["location"].rsplit("/", 1)[1])
            assert (
                c.post(
                    r.headers["location"], content=meter_reading(mmr, T0 - 60, 1400), headers=SEP_XML
                ).status_code
                == 201
            )
    mrid = new_mrid(0)
    with server.write() as s:
        program = s.execute(select(DerProgram).order_by(DerProgram.primacy)).scalars().first()
        create_control(
            s,
            site=s.get(Site, sites["device-1"]),
            program=program,
            mrid=mrid,
            start_s=T0 + 600,
            duration_s=1800,
            values=ControlValues(export_limit_w=2000),
            now_s=T0,
            response_required=3,
        )
    hook = "http://127.0.0.1:9/hook"
    with server.client("aggregator-1") as c:
        body = (
            f'<Subscription xmlns="{SEP}"><subscribedResource>/edev/{sites["aggregator-1"]}/derp/1/derc'
            f"</subscribedResource><encoding>0</encoding><level>+S1</level><limit>10</limit>"
            f"<notificationURI>{hook}</notificationURI></Subscription>"
        ).encode()
        r = c.post("/edev/0/sub", content=body, headers=SEP_XML)
        assert r.status_code == 201, r.text
        subscription = int(r.headers["location"].rsplit("/", 1)[1])
    lfdis = [server.pki.client(n).lfdi for n in CLIENTS] + [AGG_DEVICE_LFDI]
    return Known(sites, mups, mrid, subscription, lfdis)


def _hints(known: Known, operator_port: int) -> dict[str, st.SearchStrategy[str]]:
    """Steer identifiers to values that exist (and to near misses of them)."""
    near_now = st.one_of(
        st.integers(T0 - 3600, T0 + 300),
        st.sampled_from([T0, T0 + 301, T0 - 8 * 86400, 0, -1, 2**63 - 1, -(2**63)]),
    ).map(str)
    lfdis = st.sampled_from([*known.lfdis, *(x.lower() for x in known.lfdis), known.lfdis[0][:20], ""])
    sfdis = st.sampled_from([sfdi_from_lfdi(x) for x in known.lfdis] + [0, 999999999999]).map(str)
    mrids = st.sampled_from([MUP_MRID, MMR_MRID, MMR2_MRID, known.control_mrid, "", "00", "F" * 32])
    site_hrefs = [f"/edev/{i}" for i in known.sites.values()]
    resources = st.sampled_from(
        [
            "/edev",
            "/tm",
            "/edev/0/sub",
            *(f"{h}/derp/1/derc" for h in site_hrefs),
            *(f"{h}/derp/1/dderc" for h in site_hrefs),
            *(f"{h}/der/1/ders" for h in site_hrefs),
            *(f"{h}/fsa" for h in site_hrefs),
            "/edev/99999/derp/1/derc",
            f"/edev/{2**31}/derp/1/derc",
            "https://127.0.0.1/edev",
        ]
    )
    uris = st.sampled_from(
        [
            "http://127.0.0.1:9/hook",
            "http://localhost:9/hook",
            "http://127.1:9/",
            "http://[::ffff:127.0.0.1]:9/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://[fe80::1]/",
            "ftp://127.0.0.1/",
            "http://no-such-host.invalid/",
            "http://user:pw@127.0.0.1:9/",
            "/relative",
            f"http://127.0.0.1:{operator_port}/",
        ]
    )
    nmis = st.sampled_from(
        [NMI, NMI + str(nmi_checksum(NMI)), NMI.lower(), "QB00000001", "4102345679", "", "X", "1" * 11]
    )
    return {
        "lFDI": lfdis,
        "deviceLFDI": lfdis,
        "endDeviceLFDI": lfdis,
        "sFDI": sfdis,
        "mRID": mrids,
        "subject": mrids,
        "subscribedResource": resources,
        "notificationURI": uris,
        "connectionPointId": nmis,
        "start": near_now,
        "createdDateTime": near_now,
        "readingTime": near_now,
        "updatedTime": near_now,
        "changedTime": near_now,
        "dateTime": near_now,
        "uom": st.sampled_from(["38", "33", "0"]),
        "flowDirection": st.sampled_from(["1", "19", "0"]),
        "powerOfTenMultiplier": st.sampled_from(["0", "3", "-3", "127", "-128"]),
        "multiplier": st.sampled_from(["0", "0", "1", "3", "-1", "9", "10", "-128"]),
        "status": st.sampled_from(["1", "2", "3", "4", "15", "0", "254"]),
    }


# --- requests --------------------------------------------------------------------------------------------

DER_DOCS = {"dercap": "DERCapability", "derg": "DERSettings", "ders": "DERStatus", "dera": "DERAvailability"}
#: (method, path template, roots of the bodies it takes). {site}, {der}, {mup}, ... are drawn per request.
WRITES: list[tuple[str, str, tuple[str, ...]]] = [
    ("POST", "/edev", ("EndDevice",)),
    ("PUT", "/edev/{site}/cp", (CSIP_CP,)),
    ("POST", "/edev/{site}/cp", (CSIP_CP,)),
    *(("PUT", f"/edev/{{site}}/der/{{der}}/{seg}", (root,)) for seg, root in DER_DOCS.items()),
    ("POST", "/mup", ("MirrorUsagePoint",)),
    ("POST", "/mup/{mup}", ("MirrorMeterReading", "MirrorMeterReadingList")),
    ("POST", "/rsps/1/rsp", ("Response", "DERControlResponse")),
    ("POST", "/edev/{site}/lel", ("LogEvent",)),
    ("POST", "/edev/{site}/sub", ("Subscription",)),
    ("DELETE", "/mup/{mup}", ()),
    ("DELETE", "/edev/{site}/sub/{sub}", ()),
]
READS = [
    "/dcap",
    "/tm",
    "/edev",
    "/edev/{site}",
    "/edev/{site}/rg",
    "/edev/{site}/cp",
    "/edev/{site}/fsa",
    "/edev/{site}/fsa/{fsa}",
    "/edev/{site}/fsa/{fsa}/derp",
    "/edev/{site}/derp/{program}",
    "/edev/{site}/derp/{program}/derc",
    "/edev/{site}/derp/{program}/derc/{control}",
    "/edev/{site}/derp/{program}/actderc",
    "/edev/{site}/derp/{program}/dderc",
    "/edev/{site}/derp/{program}/dc",
    "/edev/{site}/derp/{program}/dc/{curve}",
    "/edev/{site}/der",
    "/edev/{site}/der/{der}",
    "/edev/{site}/der/{der}/{doc}",
    "/mup",
    "/mup/{mup}",
    "/rsps/1/rsp",
    "/rsps/1/rsp/{response}",
    "/edev/{site}/lel",
    "/edev/{site}/lel/{event}",
    "/edev/{site}/sub",
    "/edev/{site}/sub/{sub}",
    # Metering read views of what devices mirror (server/routes/usage_points.py).
    "/upt",
    "/upt/{mup}",
    "/upt/{mup}/mr",
    "/upt/{mup}/mr/{mmr}",
    "/upt/{mup}/mr/{mmr}/rt",
    "/upt/{mup}/mr/{mmr}/r",
    "/upt/{mup}/mr/{mmr}/rs",
    "/upt/{mup}/mr/{mmr}/rs/{day}",
    "/upt/{mup}/mr/{mmr}/rs/{day}/r",
    "/upt/{mup}/mr/{mmr}/rs/{day}/r/{reading}",
    "/nothing/here",
]
ALL_ROOTS = sorted({r for _m, _p, roots in WRITES for r in roots})


#: A path id: an index into the real ids of that kind (resolved when the request is built, since they
#: change during the run), or a literal: small, beyond the database's integers, or not a number at all.
#: The draw never depends on the server's state, so hypothesis sees the same shape of choices each time.
_ID_CHOICE = st.one_of(
    st.integers(0, 3).map(lambda i: ("real", i)),
    st.integers(0, 12).map(lambda n: ("literal", str(n))),
    st.sampled_from(HUGE).map(lambda n: ("literal", str(n))),
    st.sampled_from(["-1", "abc", "1.5", "%20", "00001", "1e3", "\uff11", "0x1", ""]).map(
        lambda t: ("literal", t)
    ),
)


def _query() -> st.SearchStrategy[dict[str, str]]:
    values = st.one_of(
        st.sampled_from(
            ["0", "1", "500", "501", "-1", "999999999999", "9999999999999", str(2**63), "", "1.0", "x"]
        ),
        st.text(max_size=8),
    )
    return st.one_of(
        st.just({}),
        st.dictionaries(st.sampled_from(["s", "l", "a", "x", "S", "s[]"]), values, max_size=3),
    )


@dataclass
class Request:
    client: str
    method: str
    path: str
    params: dict[str, str]
    body: bytes | None
    content_type: str | None

    def __str__(self) -> str:
        shown = (self.body or b"")[:300]
        return f"{self.client} {self.method} {self.path} {self.params} {self.content_type} {shown!r}"


def _requests(known: Known, docs: Documents) -> st.SearchStrategy[Request]:
    everyone = (*known.sites.values(), 0)
    any_document = st.one_of([docs.document(r) for r in ALL_ROOTS])
    percent = st.integers(0, 99)

    @st.composite
    def build(draw: Callable[..., Any]) -> Request:
        client = draw(st.sampled_from(CLIENTS))

        def pick(own: int | None, real: tuple[int, ...]) -> str:
            """The client's own object four times in five (so writes get past the lookup), else anything."""
            k, (kind, value) = draw(percent), draw(_ID_CHOICE)
            if own is not None and k < 80:
                return str(own)
            return str(real[value % len(real)]) if kind == "real" and real else str(value)

        def body(roots: tuple[str, ...]) -> bytes:
            """Mostly the resource's own documents, some broken, some another resource's, some junk."""
            k = draw(percent)
            if roots and k < 65:
                return bytes(draw(docs.document(draw(st.sampled_from(roots)))))
            if roots and k < 82:
                return bytes(draw(docs.near_valid(draw(st.sampled_from(roots)))))
            if k < 94:
                return bytes(draw(any_document))
            return bytes(draw(st.binary(max_size=64)))

        fill: dict[str, Callable[[], str]] = {
            "site": lambda: pick(known.sites.get(client), everyone),
            "der": lambda: pick(1, (1,)),
            "mup": lambda: pick(known.mups.get(client), tuple(known.mups.values())),
            "sub": lambda: pick(
                known.subscription if client.startswith("agg") else None, (known.subscription,)
            ),
            "fsa": lambda: pick(1, (1,)),
            "mmr": lambda: pick(1, (1, 2)),
            "day": lambda: draw(st.sampled_from(["0", "1764720000", "86400", str(2**63), "-86400", "x"])),
            "reading": lambda: pick(1, (1, 2)),
            "program": lambda: pick(1, (1,)),
            "control": lambda: draw(
                st.sampled_from([known.control_mrid, known.control_mrid.lower(), "1", "x"])
            ),
            "curve": lambda: pick(None, (1,)),
            "response": lambda: pick(None, (1, 2)),
            "event": lambda: pick(None, (1, 2)),
            "doc": lambda: draw(st.sampled_from([*DER_DOCS, *DER_DOCS, "derx", "", "DERCAP"])),
        }
        k = draw(percent)
        if k < 3:  # deletes take away what the other requests write to: rarely
            method, template, roots = draw(st.sampled_from([w for w in WRITES if w[0] == "DELETE"]))
        elif k < 70:
            method, template, roots = draw(st.sampled_from([w for w in WRITES if w[0] != "DELETE"]))
        else:
            method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "PUT", "PATCH"]))
            template, roots = draw(st.sampled_from(READS)), ()
        path = template
        for name, value in fill.items():
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", value(), 1)
        content = body(roots) if method in ("POST", "PUT") else None
        content_type = (
            "application/sep+xml"
            if draw(percent) < 92
            else draw(st.sampled_from(["text/xml", "text/plain", None]))
        )
        query = draw(_query()) if draw(percent) < 20 else {}
        return Request(client, method, path, query, content, content_type)

    return build()


# --- the oracle -----------------------------------------------------------------------------------------


def store_digest(server: RunningServer) -> str:
    """Every row of every table, hashed: equal digests mean an unchanged store."""
    h = hashlib.sha256()
    with server.ctx.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            order = ", ".join(c.name for c in table.primary_key.columns) or "1"
            for row in conn.execute(text(f"SELECT * FROM {table.name} ORDER BY {order}")):
                h.update(repr(tuple(row)).encode())
            h.update(table.name.encode())
    return h.hexdigest()


def _is_error_document(response: httpx.Response) -> bool:
    try:
        return etree.fromstring(response.content).tag == f"{{{SEP}}}Error"
    except etree.XMLSyntaxError:
        return False


def test_no_device_request_gives_a_server_error_or_a_half_write(server: RunningServer) -> None:
    known = _seed(server)
    docs = Documents(_hints(known, server.ctx.settings.operator_port))
    clients = {name: server.client(name) for name in CLIENTS}
    problems: list[str] = []
    statuses: collections.Counter[str] = collections.Counter()
    digest = [store_digest(server)]

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # one sequence against one evolving server: no replay, no shrinking
        derandomize=REQUESTS == DEFAULT_REQUESTS,
        suppress_health_check=list(HealthCheck),
    )
    @given(_requests(known, docs))
    def send(req: Request) -> None:
        # Nothing but these requests writes to the store (the fixture runs no engine or notifier), so
        # the digest after one request is the digest before the next: one full read per request.
        before = digest[0]
        headers = {"Content-Type": req.content_type} if req.content_type else {}
        try:
            r = clients[req.client].request(
                req.method, req.path, params=req.params, content=req.body, headers=headers
            )
        except AssertionError as exc:  # the schema check of a 2xx body failed
            problems.append(f"schema-invalid answer: {exc}\n  {req}")
            digest[0] = store_digest(server)
            return
        except httpx.HTTPError as exc:
            problems.append(f"transport error {type(exc).__name__}: {exc}\n  {req}")
            digest[0] = store_digest(server)
            return
        statuses[f"{req.method} {r.status_code}"] += 1
        known.learn(req.client, req.method, req.path, r)
        if os.environ.get("GRIDSHARE_DEVICE_FUZZ_VERBOSE") and r.status_code >= 400:
            print("DBG", r.status_code, req.method, req.path[:30], r.text.split("-->")[0][5:90])
        if r.status_code >= 500:
            problems.append(f"{r.status_code}: {r.text[:200]}\n  {req}")
        elif r.status_code >= 400 and req.method != "HEAD" and not _is_error_document(r):
            problems.append(f"{r.status_code} without an Error document: {r.text[:200]}\n  {req}")
        digest[0] = store_digest(server)
        if (r.status_code >= 400 or req.method in ("GET", "HEAD")) and digest[0] != before:
            problems.append(f"{r.status_code} changed the store\n  {req}")

    try:
        send()
    finally:
        for c in clients.values():
            c.close()
    total = sum(statuses.values())
    print(f"\n{total} device-port requests: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    assert total >= REQUESTS * 0.9
    assert not problems, f"{len(problems)} of {total} requests failed:\n" + "\n".join(problems[:30])
