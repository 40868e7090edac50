"""What a registration asks about every other device is found through an index, on both databases.

A ConnectionPoint write asks whether any other EndDevice holds the NMI (under any spelling); a new
mirror asks whether another has a MirrorMeterReading with its mRID. Before migration 0013 each read
every row, so onboarding a fleet cost the square of its size (bench/bench_fleet_lookups.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridshare.store.db import make_engine, upgrade
from gridshare.store.models import ClientKind, MirrorMeterReading, MirrorUsagePoint, Site
from gridshare.store.queries.metering import meter_reading_mrid_taken, mrid_taken_query
from gridshare.store.queries.nmis import holder_of, holder_query
from gridshare.store.queries.sites import create_site
from gridshare.store.scope import ClientScope


def _plan(conn: sa.Connection, query: sa.Select[tuple[object]]) -> str:
    compiled = query.compile(conn.engine, compile_kwargs={"literal_binds": True})
    if conn.dialect.name == "sqlite":
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: ask whether it *can* use one
    return " ".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {compiled}"))


def _register(session: Session, count: int) -> list[Site]:
    """`count` self-registered EndDevices, with ids, as their devices would have made them."""
    sites = []
    for i in range(count):
        lfdi = f"{i:040X}"
        sites.append(
            create_site(
                session,
                ClientScope(ClientKind.device, lfdi, i),
                lfdi=lfdi,
                sfdi=i,
                device_category=0,
                post_rate_s=None,
                pin=0,
                now_s=0,
            )
        )
    session.flush()
    return sites


def test_an_nmi_holder_is_found_under_every_spelling_through_the_index(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with Session(engine) as session, session.begin():
            for i, site in enumerate(_register(session, 50)):
                # odd sites hold ten characters, even ones eleven (a checksum digit) in lower case
                site.nmi = f"41{i:08d}" if i % 2 else f"41{i:08d}7".lower()
        with Session(engine) as session:
            holder = holder_of(session, "4100000017")
            assert holder is not None and holder.nmi == "4100000017"
            other_spelling = holder_of(session, "4100000020x")
            assert other_spelling is not None and other_spelling.nmi == "41000000207"
            assert holder_of(session, "4100000017", excluding=holder.id) is None
            assert holder_of(session, "4199999999") is None
        with engine.begin() as conn:
            plan = _plan(conn, holder_query("4100000017", excluding=3))
        assert "ix_site_nmi_canonical" in plan, plan
    finally:
        engine.dispose()


def test_a_mirror_mrid_held_by_another_device_is_found_through_the_index(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with Session(engine) as session, session.begin():
            mups = []
            for i, site in enumerate(_register(session, 20)):
                mup = MirrorUsagePoint(
                    site_id=site.id, mrid=f"{i:032X}", role_flags=0, service_category=0, status=0, changed_s=0
                )
                mup.meter_readings.append(MirrorMeterReading(mrid=f"{i + 100:032X}", reading_type={}))
                session.add(mup)
                mups.append(mup)
        with Session(engine) as session:
            first, second = (session.merge(m, load=True) for m in mups[:2])
            assert meter_reading_mrid_taken(session, second, f"{100:032X}")  # the first mirror's
            assert not meter_reading_mrid_taken(session, first, f"{100:032X}")  # its own
            assert not meter_reading_mrid_taken(session, first, f"{999:032X}")  # nobody's
        with engine.begin() as conn:
            plan = _plan(conn, mrid_taken_query(1, f"{100:032X}"))
        assert "ix_mmr_mrid" in plan, plan
    finally:
        engine.dispose()
