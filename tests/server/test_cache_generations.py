"""Cached DERControlLists stay valid through device reports, and still change with every publication.

A fleet posts telemetry every minute; if each post invalidated every cached list, a 10,000-device
fleet would re-render constantly. These tests pin which writes count as publications, that polls
after either kind see the right content, and that a status transition is re-rendered from memory
to exactly the bytes a fresh render gives.
"""

from __future__ import annotations

from lxml import etree
from sqlalchemy import select

from gridshare.server.shared.render_cache import RenderCache
from gridshare.store.db import activity_value, publication_value
from gridshare.store.models import DerControl
from gridshare.store.queries.controls import cancel_control
from tests.support.bodies import (
    SEP_XML,
    connection_point,
    der_availability,
    der_capability,
    der_settings,
    der_status,
    log_event,
    meter_reading,
    mirror_usage_point,
    response,
)
from tests.support.engine import add_control, listing, statements
from tests.support.servers import T0, RunningServer, xml_ok

NS = {"s": "urn:ieee:std:2030.5:ns"}


def _counters(server: RunningServer) -> tuple[int, int]:
    with server.ctx.sessions() as s:
        return publication_value(s), activity_value(s)


def test_device_reports_keep_cached_lists_and_still_count_as_activity(server: RunningServer) -> None:
    me = server.pki.client("device-1")
    site_id = int(server.register("device-1").rsplit("/", 1)[1])
    add_control(server, site_id, T0 + 600, 300, 5000)
    with server.client("device-1") as c:
        before = listing(c, site_id)
        assert [(status, limit) for _, status, limit in before] == [("0", "5000")]
        mrid = before[0][0]
        publication, activity = _counters(server)
        reports = [
            ("POST", "/mup", mirror_usage_point("11" * 16, me.lfdi, "22" * 16, T0 - 300, 1234)),
            ("POST", "{mup}", meter_reading("22" * 16, T0, 1300)),
            ("PUT", f"/edev/{site_id}/der/1/dercap", der_capability(66, 2)),
            ("PUT", f"/edev/{site_id}/der/1/derg", der_settings(4600, T0)),
            ("PUT", f"/edev/{site_id}/der/1/ders", der_status(T0)),
            ("PUT", f"/edev/{site_id}/der/1/dera", der_availability(T0, 3200)),
            ("POST", "/rsps/1/rsp", response(mrid, me.lfdi, 1, T0)),
            ("POST", f"/edev/{site_id}/lel", log_event(T0, 7)),
        ]
        mup_href = ""
        for method, template, body in reports:
            path = template.format(mup=mup_href)
            r = c.request(method, path, content=body, headers=SEP_XML)
            assert r.status_code in (201, 204), (path, r.text)
            mup_href = mup_href or r.headers["location"]
            assert _counters(server) == (publication, activity + 1), path
            activity += 1
            with statements(server) as sql:
                assert listing(c, site_id) == before, path
            assert sql == [], f"the poll after {path} was not answered from the cache"


def test_registrations_and_controls_still_reach_devices(server: RunningServer) -> None:
    site_id = int(server.register("device-1").rsplit("/", 1)[1])
    with server.client("device-1") as c:
        assert listing(c, site_id) == []
        publication, _ = _counters(server)
        add_control(server, site_id, T0 + 600, 300, 5000)
        assert _counters(server)[0] > publication
        assert [(s, w) for _, s, w in listing(c, site_id)] == [("0", "5000")]
        # A device binding its NMI and another registering publish nothing: each bumps the key of the
        # client that sees the site, so device-1's own poll is rendered again and device-2's
        # registration leaves device-1's cached list as it was (docs/change-feed.md).
        publication, _ = _counters(server)
        r = c.put(f"/edev/{site_id}/cp", content=connection_point("4102345678"), headers=SEP_XML)
        assert r.status_code == 204, r.text
        with statements(server) as sql:
            assert [(s, w) for _, s, w in listing(c, site_id)] == [("0", "5000")]
        assert sql != [], "device-1's own NMI binding left its list cached"
        server.register("device-2")
        assert _counters(server)[0] == publication
        with statements(server) as sql:
            assert [(s, w) for _, s, w in listing(c, site_id)] == [("0", "5000")]
        assert sql == [], "another device's registration emptied device-1's cache"
        with server.write() as s:
            cancel_control(s, s.execute(select(DerControl)).scalar_one(), int(server.clock.now()))
        assert [(s, w) for _, s, w in listing(c, site_id)] == [("2", "5000")]


def test_status_transitions_are_rendered_from_memory_exactly_as_from_the_store(server: RunningServer) -> None:
    site_id = int(server.register("device-1").rsplit("/", 1)[1])
    # back-to-back blocks, one superseded by a newer overlapping one, one cancelled
    for k in range(4):
        add_control(server, site_id, T0 + 300 * k, 300, 1000 + k)
    server.clock.advance(5)
    add_control(server, site_id, T0 + 450, 300, 9000)
    superseded_late = add_control(server, site_id, T0 + 1500, 300, 7000)
    with server.write() as s:
        cancel_control(s, s.get(DerControl, superseded_late), int(server.clock.now()))
    pages = [{}, {"l": 2}, {"s": 1, "l": 2}, {"a": T0 + 600, "l": 3}]
    with server.client("device-1") as c:
        for params in pages:  # first polls: rendered from the store and cached
            xml_ok(c.get(f"/edev/{site_id}/derp/1/derc", params=params))
        for step_s in (0, 295, 150, 155, 300, 300, 300, 600):
            server.clock.advance(step_s)
            with statements(server) as sql:
                spliced = [c.get(f"/edev/{site_id}/derp/1/derc", params=p).content for p in pages]
            assert sql == [], "a status transition needed the store"
            server.ctx.cache = RenderCache()  # what the store gives now
            fresh = [c.get(f"/edev/{site_id}/derp/1/derc", params=p).content for p in pages]
            assert spliced == fresh, f"{step_s} s on"
        assert etree.fromstring(fresh[0]).get("all") == "0"  # every control has ended
