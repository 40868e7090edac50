"""Who holds an NMI is found through an index, under every spelling, on both databases.

A ConnectionPoint write asks whether any other EndDevice holds the NMI. Before migration 0013 that
read every site, so onboarding a fleet cost the square of its size.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridshare.store.db import make_engine, upgrade
from gridshare.store.models import ClientKind
from gridshare.store.queries.nmis import holder_of, holder_query
from gridshare.store.queries.sites import create_site
from gridshare.store.scope import ClientScope


def _plan(conn: sa.Connection, query: sa.Select[tuple[object]]) -> str:
    compiled = query.compile(conn.engine, compile_kwargs={"literal_binds": True})
    if conn.dialect.name == "sqlite":
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: ask whether it *can* use one
    return " ".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {compiled}"))


def test_an_nmi_holder_is_found_under_every_spelling_through_the_index(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with Session(engine) as session, session.begin():
            for i in range(50):
                lfdi = f"{i:040X}"
                site = create_site(
                    session,
                    ClientScope(ClientKind.device, lfdi, i),
                    lfdi=lfdi,
                    sfdi=i,
                    device_category=0,
                    post_rate_s=None,
                    pin=0,
                    now_s=0,
                )
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
