"""One NMI belongs to one EndDevice: nobody takes another's envelope by naming its NMI (issue 11, defect 3).

Devices and aggregators bind NMIs with ConnectionPoint writes; the operator moves, releases and assigns
them through the operator API; the store's unique index holds under concurrent claims; and the engine
gives a network site's envelope to no EndDevice at all when two hold its NMI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree
from sqlalchemy import func, select

from gridshare.certs.identity import sfdi_from_lfdi
from gridshare.process.demo import seed_demo
from gridshare.recompute.scheduler import Recomputer
from gridshare.server.routes.end_devices import nmi_checksum
from gridshare.store.access_models import AuditEntry
from gridshare.store.db import make_engine, publication_value, upgrade
from gridshare.store.models import Aggregator, Site
from tests.support.bodies import SEP_XML, connection_point, end_device
from tests.support.engine import device_controls
from tests.support.operator_api import OPERATOR, OperatorApi, register_device, running_operator_api
from tests.support.servers import RunningServer

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}
NMI_A, NMI_B, NMI_C = "4102345678", "4102345679", "QB07654321"


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as running:
        yield running


def _cp(server: RunningServer, name: str, site_id: int) -> str | None:
    with server.client(name) as c:
        r = c.get(f"/edev/{site_id}/cp")
    assert r.status_code == 200, r.text
    return etree.fromstring(r.content).findtext("c:connectionPointId", namespaces=NS) or None


def _put_cp(server: RunningServer, name: str, site_id: int, nmi: str) -> httpx.Response:
    with server.client(name) as c:
        return c.put(f"/edev/{site_id}/cp", content=connection_point(nmi), headers=SEP_XML)


def _assert_refused(r: httpx.Response, status: int, *words: str) -> None:
    """A 2030.5 Error document whose reason (the comment before it) says why."""
    assert r.status_code == status, r.text
    assert etree.fromstring(r.content).tag == "{urn:ieee:std:2030.5:ns}Error"
    for word in words:
        assert word in r.text, r.text


def _nmis(server: RunningServer) -> dict[int, str | None]:
    with server.ctx.sessions() as s:
        return dict(s.execute(select(Site.id, Site.nmi)).all())


def _aggregator_id(server: RunningServer, name: str) -> int:
    with server.ctx.sessions() as s:
        return int(s.execute(select(Aggregator.id).where(Aggregator.name == name)).scalar_one())


def _aggregator_site(server: RunningServer, name: str, lfdi: str) -> int:
    with server.client(name) as c:
        r = c.post("/edev", content=end_device(sfdi_from_lfdi(lfdi), lfdi), headers=SEP_XML)
    assert r.status_code == 201, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def test_a_device_cannot_take_an_nmi_another_device_holds(server: RunningServer) -> None:
    one, two = register_device(server, "device-1"), register_device(server, "device-2")
    assert _put_cp(server, "device-1", one, NMI_A).status_code == 204
    before = _nmis(server)
    generation = _generation(server)
    _assert_refused(_put_cp(server, "device-2", two, NMI_A), 409, NMI_A, "another EndDevice")
    # the same NMI spelled with its checksum digit, or in another case, is the same NMI
    _assert_refused(
        _put_cp(server, "device-2", two, NMI_A + str(nmi_checksum(NMI_A))), 409, "another EndDevice"
    )
    assert _nmis(server) == before and _generation(server) == generation  # nothing written, nothing published
    assert _cp(server, "device-1", one) == NMI_A and _cp(server, "device-2", two) is None
    # re-sending its own NMI is fine (in another spelling too, which keeps the one it is bound by),
    # and so is a free one
    assert _put_cp(server, "device-1", one, NMI_A).status_code == 204
    assert _put_cp(server, "device-1", one, NMI_A + str(nmi_checksum(NMI_A))).status_code == 204
    assert _cp(server, "device-1", one) == NMI_A
    assert _put_cp(server, "device-2", two, NMI_B).status_code == 204


def _generation(server: RunningServer) -> int:
    with server.ctx.sessions() as s:
        return publication_value(s)


def test_the_operator_moves_and_releases_nmis_audited(server: RunningServer, api: OperatorApi) -> None:
    one, two = register_device(server, "device-1"), register_device(server, "device-2")
    assert _put_cp(server, "device-1", one, NMI_A).status_code == 204
    with api.client(OPERATOR) as op:
        # a PATCH does not silently steal: it names the holder and the way to move it
        r = op.patch(f"/sites/{two}", json={"nmi": NMI_A})
        assert r.status_code == 409 and f"site {one}" in r.text and "/nmis/" in r.text, r.text
        assert op.get(f"/nmis/{NMI_A}").json()["site_id"] == one
        audits, generation = api.audit_count(), _generation(server)
        moved = op.put(f"/nmis/{NMI_A}/site", json={"site_id": two})
        assert moved.status_code == 200 and moved.json()["site_id"] == two, moved.text
        assert api.audit_count() == audits + 1 and _generation(server) > generation
        with server.ctx.sessions() as s:
            entry = s.execute(select(AuditEntry).order_by(AuditEntry.id.desc())).scalars().first()
        assert entry is not None and entry.action == "nmi.bind" and entry.actor == OPERATOR
        assert entry.details is not None and entry.details["from_site_id"] == one
        assert _cp(server, "device-1", one) is None and _cp(server, "device-2", two) == NMI_A
        # device-1 cannot take it back; after a release it can
        _assert_refused(_put_cp(server, "device-1", one, NMI_A), 409)
        assert op.delete(f"/nmis/{NMI_A}/site").status_code == 204
        assert op.delete(f"/nmis/{NMI_A}/site").status_code == 404  # nothing bound: nothing audited
        assert _cp(server, "device-2", two) is None
        assert _put_cp(server, "device-1", one, NMI_A).status_code == 204
        assert op.put(f"/nmis/{NMI_A}/site", json={"site_id": 99999}).status_code == 404
        assert op.get("/nmis/not-an-nmi!").status_code in (404, 422)
    with server.ctx.sessions() as s:
        actions = s.execute(select(AuditEntry.action).where(AuditEntry.action.like("nmi.%"))).scalars().all()
    assert actions == ["nmi.bind", "nmi.release"]


def test_aggregators_bind_only_nmis_assigned_to_them_or_free(server: RunningServer, api: OperatorApi) -> None:
    agg1, agg2 = _aggregator_id(server, "aggregator-1"), _aggregator_id(server, "aggregator-2")
    mine = _aggregator_site(server, "aggregator-1", "A" * 39 + "1")
    theirs = _aggregator_site(server, "aggregator-2", "B" * 39 + "2")
    device = register_device(server, "device-1")
    with api.client(OPERATOR) as op:
        assert op.put(f"/nmis/{NMI_B}/aggregator", json={"aggregator_id": agg2}).status_code == 200
        assert op.put(f"/nmis/{NMI_C}/aggregator", json={"aggregator_id": agg1}).status_code == 200
        assert op.put(f"/nmis/{NMI_C}/aggregator", json={"aggregator_id": 99999}).status_code == 404
    # another aggregator's NMI is refused to aggregator-1 and to a device alike
    _assert_refused(_put_cp(server, "aggregator-1", mine, NMI_B), 409, "assigned")
    _assert_refused(_put_cp(server, "device-1", device, NMI_B), 409, "assigned")
    _assert_refused(_put_cp(server, "device-1", device, NMI_C), 409, "assigned")
    assert _put_cp(server, "aggregator-2", theirs, NMI_B).status_code == 204
    assert _put_cp(server, "aggregator-1", mine, NMI_C).status_code == 204
    # under `nmi_claims = open` (the default) an unassigned, unbound NMI is free to claim ...
    assert _put_cp(server, "device-1", device, NMI_A).status_code == 204
    # ... under `assigned` only what the operator bound or assigned
    server.ctx.settings.nmi_claims = "assigned"
    _assert_refused(_put_cp(server, "aggregator-1", mine, "4100000001"), 409, "nmi_claims")
    assert _put_cp(server, "aggregator-1", mine, NMI_C).status_code == 204  # its own, assigned one
    assert _put_cp(server, "device-1", device, NMI_A).status_code == 204  # what it already holds
    with api.client(OPERATOR) as op:
        # an assignment may not contradict a binding: NMI_B is bound to an EndDevice of aggregator-2
        r = op.put(f"/nmis/{NMI_B}/aggregator", json={"aggregator_id": agg1})
        assert r.status_code == 409 and f"site {theirs}" in r.text, r.text
        r = op.put(f"/nmis/{NMI_C}/site", json={"site_id": device})
        assert r.status_code == 409 and "assigned to aggregator" in r.text, r.text
        listed = op.get("/nmis", params={"aggregator_id": agg1}).json()
        assert [i["nmi"] for i in listed["items"]] == [NMI_C] and listed["items"][0]["site_id"] == mine
        assert op.delete(f"/nmis/{NMI_C}/aggregator").status_code == 204


def test_concurrent_claims_bind_an_nmi_once(server: RunningServer) -> None:
    """Two devices claim the same NMIs at the same moment: each NMI ends up with exactly one of them."""
    sites = {name: register_device(server, name) for name in ("device-1", "device-2", "device-3")}
    statuses: list[int] = []
    lock = threading.Lock()

    def claim(name: str, nmi: str, barrier: threading.Barrier) -> None:
        with server.client(name) as c:
            barrier.wait()
            r = c.put(f"/edev/{sites[name]}/cp", content=connection_point(nmi), headers=SEP_XML)
        with lock:
            statuses.append(r.status_code)

    for i in range(8):
        nmi = f"41000000{i:02d}"
        barrier = threading.Barrier(len(sites))
        threads = [threading.Thread(target=claim, args=(n, nmi, barrier)) for n in sites]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        holders = [sid for sid, held in _nmis(server).items() if held == nmi]
        assert len(holders) == 1, (nmi, holders)
    assert set(statuses) <= {204, 409} and statuses.count(204) == 8, statuses


def test_the_database_refuses_one_nmi_twice(database_url: str) -> None:
    """The unique index, on both databases: the last line of defence against a race past the checks."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            for i in (1, 2):
                values = dict(lfdi=f"{i:040d}", sfdi=i, registration_pin=1, created_s=0, changed_s=0)
                conn.execute(sa.insert(Site).values(**values, device_category=0, enabled=True))
            conn.execute(sa.update(Site).where(Site.id == 1).values(nmi=NMI_A))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.update(Site).where(Site.id == 2).values(nmi=NMI_A))
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).where(Site.nmi == NMI_A)).scalar_one() == 1
    finally:
        engine.dispose()


def test_upgrading_releases_nmis_several_end_devices_held(database_url: str) -> None:
    """Migration 0008 cannot know which claimant is real: it releases the NMI from all, audited."""
    from alembic import command

    from gridshare.store.db import alembic_config

    engine = make_engine(database_url)
    try:
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0007")  # the revision before NMI ownership
        with engine.begin() as conn:
            for i, nmi in enumerate((NMI_A, NMI_A, NMI_B), start=1):
                conn.execute(
                    sa.text(
                        "INSERT INTO site (id, lfdi, sfdi, device_category, nmi, registration_pin, enabled, "
                        "created_s, changed_s) VALUES (:id, :lfdi, :id, 0, :nmi, 1, true, 0, 0)"
                    ),
                    {"id": i, "lfdi": f"{i:040d}", "nmi": nmi},
                )
        upgrade(engine)
        with engine.connect() as conn:
            assert dict(conn.execute(select(Site.id, Site.nmi)).all()) == {
                1: None,
                2: None,
                3: NMI_B,
            }
            released = conn.execute(
                select(AuditEntry.target)
                .where(AuditEntry.action == "nmi.release")
                .order_by(AuditEntry.target)
            ).scalars()
            assert list(released) == ["site:1", "site:2"]
    finally:
        engine.dispose()


# --- the engine -----------------------------------------------------------------------------------------


def _site_of(server: RunningServer, name: str) -> Site:
    with server.ctx.sessions() as s:
        return s.execute(select(Site).where(Site.lfdi == server.pki.client(name).lfdi)).scalar_one()


def test_naming_another_sites_nmi_does_not_move_its_envelope(server: RunningServer) -> None:
    """The issue's drill: device-2 names device-1's NMI; each device keeps its own envelope."""
    server.ctx.settings.envelope_horizon_s = 3 * 3600
    seed_demo(server.ctx, server.pki)
    one, two = _site_of(server, "device-1"), _site_of(server, "device-2")
    assert one.nmi and two.nmi and one.nmi != two.nmi
    engine = Recomputer(server.ctx)
    assert engine.run_once("test").status == "published"
    before_one, before_two = device_controls(server, "device-1"), device_controls(server, "device-2")
    assert before_one and before_two
    _assert_refused(_put_cp(server, "device-2", two.id, one.nmi), 409, one.nmi)
    assert engine.run_once("test").status == "published"
    assert device_controls(server, "device-1") == before_one
    assert device_controls(server, "device-2") == before_two


def test_the_engine_gives_a_contested_nmi_to_nobody(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the store holds (here: the unique index dropped and two EndDevices on one NMI), one network
    site's envelope never reaches two devices: both fall back to their DefaultDERControl."""
    server.ctx.settings.envelope_horizon_s = 3 * 3600
    seed_demo(server.ctx, server.pki)
    one, two = _site_of(server, "device-1"), _site_of(server, "device-2")
    with server.ctx.engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX IF EXISTS uq_site_nmi"))
        conn.execute(sa.update(Site).where(Site.id == two.id).values(nmi=one.nmi))
    with caplog.at_level(logging.WARNING, logger="gridshare.recompute"):
        assert Recomputer(server.ctx).run_once("test").status == "published"
    assert device_controls(server, "device-1") == [] and device_controls(server, "device-2") == []
    assert device_controls(server, "device-3"), "an uncontested site keeps its envelope"
    assert any(one.nmi in r.getMessage() and "none of them" in r.getMessage() for r in caplog.records)
