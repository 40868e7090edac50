"""Builders for the engine suites: the controls a device reads after a run, fallback and site rows, derate
fixtures shared by the recomputation, fallback and NMI tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from lxml import etree
from sqlalchemy import event, select

from gridshare.core.mrid import new_mrid
from gridshare.sim import wire
from gridshare.sim.events import ControlBase, EventBook
from gridshare.store.models import DerProgram, Site
from gridshare.store.queries.controls import ControlValues, create_control
from tests.support.bodies import (
    SEP_XML,
    connection_point,
    der_capability,
    der_settings,
    mirror_usage_point,
)
from tests.support.servers import T0, RunningServer, xml_ok


def device_controls(server: RunningServer, name: str = "device-1") -> list[dict[str, object]]:
    me = server.pki.client(name)
    with server.ctx.sessions() as s:
        site = s.execute(select(Site).where(Site.lfdi == me.lfdi)).scalar_one()
    with server.client(name) as c:
        root = etree.fromstring(c.get(f"/edev/{site.id}/derp/1/derc", params={"l": 500}).content)
    out = []
    for ctl in root:
        base = ctl.find("s:DERControlBase", NS)
        out.append(
            {
                "mrid": ctl.findtext("s:mRID", namespaces=NS),
                "start": int(ctl.findtext("s:interval/s:start", namespaces=NS)),
                "duration": int(ctl.findtext("s:interval/s:duration", namespaces=NS)),
                "status": int(ctl.findtext("s:EventStatus/s:currentStatus", namespaces=NS)),
                "export": watts(base.find("c:opModExpLimW", NS)),
                "import": watts(base.find("c:opModImpLimW", NS)),
            }
        )
    return out


HORIZON_S = 2 * 3600


FEEDER = "demo-feeder"


def site_row(server: RunningServer, name: str) -> Site:
    with server.ctx.sessions() as s:
        return s.execute(select(Site).where(Site.lfdi == server.pki.client(name).lfdi)).scalar_one()


def active_controls(server: RunningServer, name: str) -> list[tuple[float | None, float | None]]:
    """(export W, import W) of the device's controls in force now (status active)."""
    site = site_row(server, name)
    with server.client(name) as c:
        root = etree.fromstring(c.get(f"/edev/{site.id}/derp/1/derc", params={"l": 100}).content)
    return [
        (
            watts(ctl.find("s:DERControlBase/c:opModExpLimW", NS)),
            watts(ctl.find("s:DERControlBase/c:opModImpLimW", NS)),
        )
        for ctl in root
        if ctl.findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "1"
    ]


def default_control(server: RunningServer, name: str) -> dict[str, float | str | None]:
    site = site_row(server, name)
    with server.client(name) as c:
        root = etree.fromstring(c.get(f"/edev/{site.id}/derp/1/dderc").content)
    base = root.find("s:DERControlBase", NS)
    return {
        "export": watts(base.find("c:opModExpLimW", NS)),
        "import": watts(base.find("c:opModImpLimW", NS)),
        "generation": watts(base.find("c:opModGenLimW", NS)),
        "load": watts(base.find("c:opModLoadLimW", NS)),
        "grad": int(root.findtext("s:setGradW", namespaces=NS)),
        "description": root.findtext("s:description", namespaces=NS),
    }


def applied_controls(server: RunningServer) -> tuple[ControlBase, ControlBase]:
    """(control in force now, control once communications are lost) as the device applies them."""
    book = device_book(server)
    return book.control_at(server.ctx.now_s()), book.control_at(server.ctx.now_s(), fallback=True)


def der_links(c: httpx.Client, edev_href: str) -> dict[str, str]:
    """Follow EndDevice -> DERListLink -> the one DER -> its four document links."""
    edev = xml_ok(c.get(edev_href))
    der_list = xml_ok(c.get(edev.find("s:DERListLink", NS).get("href")))
    assert der_list.get("all") == "1" and der_list.get("results") == "1"
    ders = der_list.findall("s:DER", NS)
    assert len(ders) == 1
    der = xml_ok(c.get(ders[0].get("href")))
    return {name: der.find(f"s:{name}Link", NS).get("href") for name in DOCS}


def add_control(server: RunningServer, site_id: int, start_s: int, duration_s: int, export_w: float) -> int:
    with server.write() as s:
        program = s.execute(select(DerProgram).order_by(DerProgram.primacy)).scalars().first()
        control = create_control(
            s,
            site=s.get(Site, site_id),
            program=program,
            mrid=new_mrid(0),
            start_s=start_s,
            duration_s=duration_s,
            values=ControlValues(export_limit_w=export_w),
            now_s=int(server.clock.now()),
        )
        return control.id


def listing(c: httpx.Client, site_id: int, **params: int) -> list[tuple[str, str, str]]:
    """(mRID, currentStatus, export limit) of each DERControl the device is sent."""
    doc = xml_ok(c.get(f"/edev/{site_id}/derp/1/derc", params={"l": 10, **params}))
    return [
        (
            el.findtext("s:mRID", namespaces=NS),
            el.findtext("s:EventStatus/s:currentStatus", namespaces=NS),
            el.findtext("s:DERControlBase/{https://csipaus.org/ns}opModExpLimW/s:value", namespaces=NS),
        )
        for el in doc.findall("s:DERControl", NS)
    ]


DEVICE = "device-1"  # bound by the demo to solar-farm-north
NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


def watts(el: etree._Element | None) -> float | None:
    if el is None:
        return None
    return int(el.findtext("s:value", namespaces=NS)) * 10 ** int(el.findtext("s:multiplier", namespaces=NS))


DOCS = ("DERCapability", "DERSettings", "DERStatus", "DERAvailability")


def device_book(server: RunningServer) -> EventBook:
    """What the device holds after one poll of its program's controls and default."""
    site = site_row(server, DEVICE)
    href = f"/edev/{site.id}/derp/1"
    with server.client(DEVICE) as c:
        program = wire.parse(c.get(href).content)
        primacy = int(program.findtext("s:primacy", namespaces=wire.NS))
        events = wire.controls(wire.parse(c.get(f"{href}/derc", params={"l": 100}).content), href, primacy)
        default = wire.default_control(wire.parse(c.get(f"{href}/dderc").content))
    book = EventBook(DEVICE)
    book.set_default(href, primacy, default)
    book.update_program(href, events, server.ctx.now_s())
    return book


def site_id_of(server: RunningServer, name: str) -> int:
    me = server.pki.client(name)
    with server.ctx.sessions() as s:
        return s.execute(select(Site.id).where(Site.lfdi == me.lfdi)).scalar_one()


def published_limits_w(server: RunningServer, name: str) -> list[tuple[float, float | None]]:
    """(opModExpLimW, opModImpLimW or None) of every scheduled or active DERControl the device reads
    over mTLS."""
    site_id = site_id_of(server, name)
    with server.client(name) as c:
        root = etree.fromstring(c.get(f"/edev/{site_id}/derp/1/derc", params={"l": 500}).content)
    out = []
    for ctl in root:
        if int(ctl.findtext("s:EventStatus/s:currentStatus", namespaces=NS)) not in (0, 1):
            continue  # cancelled or superseded by the newer set
        export_w = watts(ctl.find("s:DERControlBase/c:opModExpLimW", NS))
        assert export_w is not None
        out.append((export_w, watts(ctl.find("s:DERControlBase/c:opModImpLimW", NS))))
    return out


def export_limits_w(server: RunningServer, name: str) -> list[float]:
    """The opModExpLimW of every scheduled or active DERControl the device reads over mTLS."""
    return [export_w for export_w, _ in published_limits_w(server, name)]


@contextmanager
def statements(server: RunningServer) -> Iterator[list[str]]:
    """SQL the application runs through its engine while the block runs."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(server.ctx.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(server.ctx.engine, "before_cursor_execute", record)


def device_with_everything(server: RunningServer, name: str = "device-1") -> tuple[int, int, list[str]]:
    """A registered device with a control, an NMI, DER documents and a mirror; (site, control, paths)."""
    me = server.pki.client(name)
    site_id = int(server.register(name).rsplit("/", 1)[1])
    control_id = add_control(server, site_id, T0 - 60, 600, 5000)
    add_control(server, site_id, T0 + 600, 300, 4000)
    with server.client(name) as c:
        for method, path, body in (
            ("PUT", f"/edev/{site_id}/cp", connection_point("4102345678")),
            ("PUT", f"/edev/{site_id}/der/1/dercap", der_capability(66, 2)),
            ("PUT", f"/edev/{site_id}/der/1/derg", der_settings(4600, T0)),
            ("POST", "/mup", mirror_usage_point("11" * 16, me.lfdi, "22" * 16, T0 - 300, 1234)),
        ):
            r = c.request(method, path, content=body, headers=SEP_XML)
            assert r.status_code in (201, 204), (path, r.text)
        mup = r.headers["location"]
        fsa = xml_ok(c.get(f"/edev/{site_id}/fsa")).find("s:FunctionSetAssignments", NS)
        fsa_id = int(fsa.get("href").rsplit("/", 1)[1])
        derp = xml_ok(c.get(f"/edev/{site_id}/fsa/{fsa_id}/derp")).find("s:DERProgram", NS)
        program = derp.get("href")
    paths = [
        "/dcap",
        "/tm",
        "/edev",
        f"/edev/{site_id}",
        f"/edev/{site_id}/rg",
        f"/edev/{site_id}/cp",
        f"/edev/{site_id}/fsa",
        f"/edev/{site_id}/fsa/{fsa_id}",
        f"/edev/{site_id}/fsa/{fsa_id}/derp",
        program,
        f"{program}/derc",
        f"{program}/derc/{control_id}",
        f"{program}/actderc",
        f"{program}/dc",
        f"/edev/{site_id}/der",
        f"/edev/{site_id}/der/1",
        f"/edev/{site_id}/der/1/dercap",
        f"/edev/{site_id}/der/1/derg",
        "/mup",
        mup,
    ]
    return site_id, control_id, paths


def control_for_site(server: RunningServer, lfdi: str) -> str:
    """An operator's DERControl for the site with `lfdi`, starting in a minute; returns its mRID."""
    mrid = new_mrid(0)
    with server.write() as s:
        program = s.execute(select(DerProgram).order_by(DerProgram.id)).scalars().first()
        site = s.execute(select(Site).where(Site.lfdi == lfdi)).scalar_one()
        create_control(
            s,
            site=site,
            program=program,
            mrid=mrid,
            start_s=T0 + 60,
            duration_s=1800,
            values=ControlValues(export_limit_w=2000),
            now_s=T0,
            response_required=3,
        )
    return mrid
