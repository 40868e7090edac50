"""DERControls as a device sees them over time: scheduled -> active -> gone, cancellation, supersession."""

from __future__ import annotations

from lxml import etree
from sqlalchemy import select

from gridshare.core.mrid import new_mrid
from gridshare.store.models import DerProgram, FunctionSetAssignments, Site
from gridshare.store.queries.controls import (
    ControlValues,
    cancel_control,
    create_control,
    set_default_control,
)
from tests.support.servers import T0, RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


def _register(server: RunningServer, name: str = "device-1") -> int:
    return int(server.register(name).rsplit("/", 1)[1])


def _add(
    server: RunningServer,
    site_id: int,
    start_s: int,
    duration_s: int,
    program: str = "first",
    **values: float,
) -> str:
    mrid = new_mrid(0)
    with server.write() as s:
        programs = s.execute(select(DerProgram).order_by(DerProgram.primacy)).scalars().all()
        prog = programs[0] if program == "first" else programs[-1]
        create_control(
            s,
            site=s.get(Site, site_id),
            program=prog,
            mrid=mrid,
            start_s=start_s,
            duration_s=duration_s,
            values=ControlValues(**values),
            now_s=int(server.clock.now()),
        )
    return mrid


def _controls(
    server: RunningServer, site_id: int, name: str = "device-1", path: str = "derc"
) -> list[etree._Element]:
    with server.client(name) as c:
        r = c.get(f"/edev/{site_id}/derp/1/{path}", params={"l": 50})
        assert r.status_code == 200, r.text
        return list(etree.fromstring(r.content))


def _status(el: etree._Element) -> int:
    return int(el.findtext("s:EventStatus/s:currentStatus", namespaces=NS))


def test_status_follows_the_clock(server: RunningServer) -> None:
    site = _register(server)
    mrid = _add(server, site, T0 + 600, 300, export_limit_w=5000)
    assert [(_status(e), e.findtext("s:mRID", namespaces=NS)) for e in _controls(server, site)] == [(0, mrid)]
    assert _controls(server, site, path="actderc") == []
    server.clock.advance(600)  # start of the interval: active
    assert _status(_controls(server, site)[0]) == 1
    assert len(_controls(server, site, path="actderc")) == 1
    server.clock.advance(300)  # end of the interval: the control has expired and drops out
    assert _controls(server, site) == []


def test_doe_limits_render_without_int16_overflow(server: RunningServer) -> None:
    site = _register(server)
    watts = {
        "export_limit_w": 1_234_567.0,
        "import_limit_w": 32_767.0,
        "generation_limit_w": 40_000.0,
        "load_limit_w": 0.0,
    }
    _add(server, site, T0, 3600, **watts)
    base = _controls(server, site)[0].find("s:DERControlBase", NS)
    for name, field in (
        ("opModExpLimW", "export_limit_w"),
        ("opModImpLimW", "import_limit_w"),
        ("opModGenLimW", "generation_limit_w"),
        ("opModLoadLimW", "load_limit_w"),
    ):
        el = base.find(f"c:{name}", NS)
        value, multiplier = (
            int(el.findtext("s:value", namespaces=NS)),
            int(el.findtext("s:multiplier", namespaces=NS)),
        )
        assert -32768 <= value <= 32767
        published = value * 10**multiplier
        # never above the computed limit, and within one unit of the multiplier below it
        assert published <= watts[field] < published + 10**multiplier


def test_cancelled_control_stays_visible_with_cancelled_status(server: RunningServer) -> None:
    site = _register(server)
    mrid = _add(server, site, T0 + 60, 600, export_limit_w=1000)
    server.clock.advance(120)
    with server.write() as s:
        from gridshare.store.models import DerControl

        control = s.execute(select(DerControl).where(DerControl.mrid == mrid)).scalar_one()
        cancel_control(s, control, int(server.clock.now()))
    [el] = _controls(server, site)
    assert _status(el) == 2
    assert int(el.findtext("s:EventStatus/s:dateTime", namespaces=NS)) == T0 + 120
    assert _controls(server, site, path="actderc") == []


def test_newer_overlapping_control_supersedes_within_one_program_only(server: RunningServer) -> None:
    site = _register(server)
    with server.write() as s:
        fsa = s.execute(select(FunctionSetAssignments)).scalars().first()
        fsa.programs.append(DerProgram(mrid=new_mrid(0), description="Second", primacy=2, changed_s=T0))
    old = _add(server, site, T0 + 300, 600, export_limit_w=1000)
    other_program = _add(server, site, T0 + 300, 600, program="last", export_limit_w=3000)
    server.clock.advance(10)
    new = _add(server, site, T0 + 600, 600, export_limit_w=2000)
    by_mrid = {e.findtext("s:mRID", namespaces=NS): _status(e) for e in _controls(server, site)}
    assert by_mrid == {old: 4, new: 0}
    with server.client("device-1") as c:
        second = etree.fromstring(c.get(f"/edev/{site}/derp/2/derc", params={"l": 10}).content)
    assert [(e.findtext("s:mRID", namespaces=NS), _status(e)) for e in second] == [(other_program, 0)]


def test_list_order_and_new_publication_is_seen_immediately(server: RunningServer) -> None:
    site = _register(server)
    late = _add(server, site, T0 + 1200, 300, export_limit_w=1)
    early = _add(server, site, T0 + 600, 300, export_limit_w=2)
    assert [e.findtext("s:mRID", namespaces=NS) for e in _controls(server, site)] == [early, late]
    # a poll that was just answered (and cached) must not hide a control published after it
    newest = _add(server, site, T0 + 900, 300, export_limit_w=3)
    assert [e.findtext("s:mRID", namespaces=NS) for e in _controls(server, site)] == [early, newest, late]


def test_other_device_cannot_read_controls(server: RunningServer) -> None:
    site = _register(server)
    _register(server, "device-2")
    _add(server, site, T0, 600, export_limit_w=1)
    with server.client("device-2") as c:
        assert c.get(f"/edev/{site}/derp/1/derc").status_code == 404
        assert c.get(f"/edev/{site}/derp/1/dderc").status_code == 404


def test_default_control_site_specific_overrides_program_wide(server: RunningServer) -> None:
    site = _register(server)
    site2 = _register(server, "device-2")
    with server.write() as s:
        program = s.execute(select(DerProgram)).scalars().first()
        set_default_control(
            s,
            program=program,
            site=s.get(Site, site),
            mrid=new_mrid(0),
            values=ControlValues(export_limit_w=2500, import_limit_w=7000),
            now_s=T0,
            set_grad_w_hundredths=27,
        )
    with server.client("device-1") as c:
        d = etree.fromstring(c.get(f"/edev/{site}/derp/1/dderc").content)
    assert d.findtext("s:DERControlBase/c:opModExpLimW/s:value", namespaces=NS) == "2500"
    assert d.findtext("s:setGradW", namespaces=NS) == "27"
    with server.client("device-2") as c:
        d2 = etree.fromstring(c.get(f"/edev/{site2}/derp/1/dderc").content)
    seeded_w = server.ctx.settings.default_export_limit_w
    exp = d2.find("s:DERControlBase/c:opModExpLimW", NS)
    assert (
        int(exp.findtext("s:value", namespaces=NS)) * 10 ** int(exp.findtext("s:multiplier", namespaces=NS))
        == seeded_w
    )
