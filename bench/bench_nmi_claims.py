"""What checking an NMI claim costs as the fleet grows, with and without `ix_site_nmi_canonical`.

Every ConnectionPoint write that binds a new NMI asks whether another EndDevice holds it under any
spelling (store.queries.nmis.holder_of). Without an index on the NMI's one spelling that question reads
every site, so onboarding a fleet costs its size squared; migration 0013 adds the index. This fills a
scratch SQLite store with N sites (one NMI each), times the check, drops the index and times it again.

    .venv/bin/python -m bench.bench_nmi_claims [--sites 10000 100000 200000] [--checks 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from gridshare.store.db import make_engine, upgrade
from gridshare.store.queries.nmis import holder_of

_FILL = (
    "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < ?) "
    "INSERT INTO site (lfdi, sfdi, aggregator_id, device_category, nmi, registration_pin, enabled, "
    "created_s, changed_s) SELECT printf('%040X', v), v, NULL, 0, printf('41%08d', v), 0, 1, 0, 0 FROM n"
)


def ms_per_check(session: Session, sites: int, checks: int) -> float:
    started = time.perf_counter()
    for i in range(checks):
        holder_of(session, f"41{(i * 7919) % sites + 1:08d}", excluding=0)
    return (time.perf_counter() - started) / checks * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, nargs="+", default=[10_000, 100_000, 200_000])
    parser.add_argument("--checks", type=int, default=50)
    args = parser.parse_args()
    table = Table(title="one NMI claim check (holder_of), SQLite, ms")
    for column in ("sites", "with ix_site_nmi_canonical", "without (every site read)"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="gridshare-nmi-") as tmp:
        for sites in args.sites:
            engine = make_engine(f"sqlite:///{Path(tmp) / f'{sites}.db'}")
            upgrade(engine)
            with engine.begin() as conn:
                conn.exec_driver_sql(_FILL, (sites,))
            with Session(engine) as session:
                indexed = ms_per_check(session, sites, args.checks)
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP INDEX ix_site_nmi_canonical")
            with Session(engine) as session:
                scanned = ms_per_check(session, sites, args.checks)
            engine.dispose()
            table.add_row(f"{sites:,}", f"{indexed:.2f}", f"{scanned:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
