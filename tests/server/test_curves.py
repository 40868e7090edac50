"""CSIP-AUS volt-var and volt-watt curves as a device reads them from its program."""

from __future__ import annotations

import pytest
from lxml import etree
from sqlalchemy import select

from gridshare.core.mrid import new_mrid
from gridshare.store.models import DerProgram
from gridshare.store.queries.controls import add_curve
from tests.support.bodies import SEP_XML, end_device
from tests.support.servers import T0, RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns"}
# AS/NZS 4777.2:2020 Australia A volt-var settings: (V, var % of rating) at 207/220/240/258 V
VOLT_VAR = [(207, 44), (220, 0), (240, 0), (258, -60)]
# ... and volt-watt: full power to 253 V, 20 % at 260 V
VOLT_WATT = [(253, 100), (260, 20)]


def test_program_lists_its_curves_in_a_schema_valid_way(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    with server.write() as s:
        program = s.execute(select(DerProgram)).scalars().first()
        vv = add_curve(s, program=program, mrid=new_mrid(0), curve_type=11, points=VOLT_VAR, now_s=T0)
        add_curve(s, program=program, mrid=new_mrid(0), curve_type=12, points=VOLT_WATT, now_s=T0)
    with server.client("device-1") as c:
        site = c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML).headers["location"]
        prog = etree.fromstring(c.get(f"{site}/derp/1").content)
        link = prog.find("s:DERCurveListLink", NS)
        assert link.get("all") == "2"
        curves = etree.fromstring(c.get(link.get("href"), params={"l": 5}).content)
        assert [int(x.findtext("s:curveType", namespaces=NS)) for x in curves] == [11, 12]
        first = etree.fromstring(c.get(curves[0].get("href")).content)
        points = [
            (int(p.findtext("s:xvalue", namespaces=NS)), int(p.findtext("s:yvalue", namespaces=NS)))
            for p in first.findall("s:CurveData", NS)
        ]
        assert points == VOLT_VAR
        assert c.get(f"{site}/derp/1/dc/{vv.id + 100}").status_code == 404


def test_curve_points_must_be_ordered_and_bounded(server: RunningServer) -> None:
    with server.write() as s:
        program = s.execute(select(DerProgram)).scalars().first()
        with pytest.raises(ValueError, match="increasing"):
            add_curve(
                s, program=program, mrid=new_mrid(0), curve_type=11, points=[(240, 0), (220, 0)], now_s=T0
            )
        with pytest.raises(ValueError, match="1 to 10"):
            add_curve(
                s,
                program=program,
                mrid=new_mrid(0),
                curve_type=11,
                points=[(200 + i, 0) for i in range(11)],
                now_s=T0,
            )
