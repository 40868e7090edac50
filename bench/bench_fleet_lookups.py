"""What a registration's fleet-wide lookups cost as the fleet grows, with and without their indexes.

Two checks of a device's registration are about every other device: whether another EndDevice holds
the NMI it binds, under any spelling (store.queries.nmis.holder_of, index `ix_site_nmi_canonical`),
and whether another MirrorUsagePoint has a MirrorMeterReading with its new mirror's mRID
(store.queries.metering.meter_reading_mrid_taken, index `ix_mmr_mrid`). Without those indexes each
reads every row, so onboarding a fleet costs its size squared; migration 0013 adds them. This fills a
scratch SQLite store with N sites (one NMI, one mirror and one meter reading each), times each check,
drops the indexes and times them again.

    .venv/bin/python -m bench.bench_fleet_lookups [--sites 10000 100000 200000] [--checks 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from gridshare.store.db import make_engine, upgrade
from gridshare.store.models import MirrorUsagePoint
from gridshare.store.queries.metering import meter_reading_mrid_taken
from gridshare.store.queries.nmis import holder_of

_FILL = [
    "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < ?) "
    "INSERT INTO site (id, lfdi, sfdi, aggregator_id, device_category, nmi, registration_pin, enabled, "
    "created_s, changed_s) SELECT v, printf('%040X', v), v, NULL, 0, printf('41%08d', v), 0, 1, 0, 0 FROM n",
    "INSERT INTO mirror_usage_point (id, site_id, mrid, role_flags, service_category, status, changed_s) "
    "SELECT id, id, printf('%032X', id), 0, 0, 0, 0 FROM site",
    "INSERT INTO mirror_meter_reading (mup_id, mrid, reading_type) "
    "SELECT id, printf('%032X', id + 1000000000), '{}' FROM mirror_usage_point",
]
_INDEXES = ("ix_site_nmi_canonical", "ix_mmr_mrid")


def ms_per_check(check: Callable[[int], object], sites: int, checks: int) -> float:
    started = time.perf_counter()
    for i in range(checks):
        check((i * 7919) % sites + 1)
    return (time.perf_counter() - started) / checks * 1000


def timings(session: Session, sites: int, checks: int) -> tuple[float, float]:
    """(NMI claim, mirror mRID check) in ms, each for a value another device holds."""
    newcomer = MirrorUsagePoint(id=0)  # the mirror being created: every existing one is another's
    return (
        ms_per_check(lambda i: holder_of(session, f"41{i:08d}", excluding=0), sites, checks),
        ms_per_check(
            lambda i: meter_reading_mrid_taken(session, newcomer, f"{i + 1_000_000_000:032X}"), sites, checks
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, nargs="+", default=[10_000, 100_000, 200_000])
    parser.add_argument("--checks", type=int, default=50)
    args = parser.parse_args()
    if min(args.sites) < 1 or args.checks < 1:
        parser.error(f"--sites and --checks must be at least 1, got {args.sites} and {args.checks}")
    table = Table(title="a registration's fleet-wide lookups, SQLite, ms each")
    for column in (
        "sites",
        "NMI claim, indexed",
        "NMI claim, every site read",
        "mirror mRID, indexed",
        "mirror mRID, every row read",
    ):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="gridshare-lookups-") as tmp:
        for sites in args.sites:
            engine = make_engine(f"sqlite:///{Path(tmp) / f'{sites}.db'}")
            upgrade(engine)
            with engine.begin() as conn:
                for statement in _FILL:
                    conn.exec_driver_sql(statement, (sites,) if "?" in statement else ())
            with Session(engine) as session:
                nmi_indexed, mrid_indexed = timings(session, sites, args.checks)
            with engine.begin() as conn:
                for index in _INDEXES:
                    conn.exec_driver_sql(f"DROP INDEX {index}")
            with Session(engine) as session:
                nmi_scanned, mrid_scanned = timings(session, sites, args.checks)
            engine.dispose()
            table.add_row(
                f"{sites:,}", *(f"{ms:.2f}" for ms in (nmi_indexed, nmi_scanned, mrid_indexed, mrid_scanned))
            )
    Console().print(table)


if __name__ == "__main__":
    main()
