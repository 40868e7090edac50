"""How long the Metering read views take as mirrored history grows (server/shared/metering_views.py).

Telemetry is kept, so a site posting every 5 minutes has 105,120 readings after a year. One site's
mirror with `--days` of 5-minute readings on one MeterReading (plus a retry of every 10th interval) is
seeded straight into the store, then each view is built as its GET handler builds it (queries and
encoding, no HTTP), best of `--repeat`.

    .venv/bin/python -m bench.bench_metering_views [--days 30 365] [--repeat 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lxml import etree
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

from bench.bench_derc import scratch_database
from bench.seeding import add_metered_site
from gridshare.core.clock import FixedClock
from gridshare.core.settings import Settings
from gridshare.server.shared import metering_views as views
from gridshare.server.shared.context import build_context
from gridshare.server.shared.request_unit import Unit
from gridshare.store.db import transaction
from gridshare.store.models import ClientKind, TelemetryReading
from gridshare.store.scope import ClientScope

T0 = 1795392000  # 2026-11-23T00:00:00Z
LFDI = "B" * 40
INTERVAL_S = 300


def seed(url: str, data_dir: Path, days: int) -> tuple[Unit, int, int, int]:
    ctx = build_context(
        Settings(data_dir=data_dir, database_url=url, demo_network=False), FixedClock(T0 + days * 86400)
    )
    with transaction(ctx.sessions) as s:
        metered = add_metered_site(
            s,
            lfdi=LFDI,
            now_s=T0,
            mup_mrid="B" * 32,
            mmr_mrid="C" * 32,
            role_flags=3,
            reading_type={"uom": 38, "kind": 37, "powerOfTenMultiplier": 0},
        )
    ids = (metered.mup_id, metered.mmr_id)
    n = days * 86400 // INTERVAL_S
    rows = [
        {
            "mmr_id": ids[1],
            "time_s": T0 + i * INTERVAL_S,
            "duration_s": INTERVAL_S,
            "value": i % 5000,
            "power_of_ten": 0,
            "received_s": T0 + i * INTERVAL_S,
        }
        for i in range(n)
    ]
    rows += [{**r, "value": r["value"] + 1} for r in rows[::10]]  # retries: the later one counts
    with transaction(ctx.sessions) as s:
        for start in range(0, len(rows), 20000):
            s.execute(insert(TelemetryReading), rows[start : start + 20000])
    session = ctx.sessions()
    scope = ClientScope(ClientKind.device, LFDI, 1)
    return Unit(ctx, session, scope, 0), ids[0], ids[1], len(rows)


def best_ms(build: Callable[[], etree._Element], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        etree.tostring(build())
        best = min(best, time.perf_counter() - t0)
    return best * 1000.0


def measure(url: str, data_dir: Path, days: int, repeat: int) -> tuple[int, list[float]]:
    u, mup_id, mmr_id, count = seed(url, data_dir, days)
    last_day = T0 + (days - 1) * 86400
    try:
        return count, [
            best_ms(lambda: views.usage_point_list(u, 0, 10), repeat),
            best_ms(lambda: views.meter_reading_list(u, mup_id, 0, 10), repeat),
            best_ms(lambda: views.reading_set_list(u, mup_id, mmr_id, 0, 10, None), repeat),
            best_ms(lambda: views.reading_list(u, mup_id, mmr_id, last_day, 0, 288, None), repeat),
            best_ms(lambda: views.latest_reading(u, mup_id, mmr_id), repeat),
        ]
    finally:
        u.session.close()
        u.ctx.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, nargs="+", default=[30, 365])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL: a scratch database is made there and dropped"
    )
    args = parser.parse_args()
    table = Table(title="Metering views, one MeterReading of 5-minute readings (best ms)")
    columns = (
        "days",
        "readings",
        "UsagePointList",
        "MeterReadingList",
        "ReadingSetList l=10",
        "ReadingList l=288",
        "newest Reading",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for days in args.days:
        with (
            tempfile.TemporaryDirectory() as tmp,
            scratch_database(args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}") as url,
        ):
            count, cells = measure(url, Path(tmp), days, args.repeat)
            table.add_row(str(days), f"{count:,}", *(f"{c:.1f}" for c in cells))
    Console().print(table)


if __name__ == "__main__":
    main()
