"""What one batch of device reports costs the report writer's thread, per store and batch size.

The report writer (store/group_commit.py) commits the readings and Responses that queued while the
last batch was committing. Its thread shares the serving process's interpreter with the event loop, so
every millisecond it spends per batch is a millisecond the loop cannot answer polls. This bench runs
the writer's own batch (`GroupCommitWriter._outcomes`) on a scratch store with foreign keys on, two ways
in alternation: as the server runs it (the reports handed whole to store/bulk_insert.InsertBatch, on
PostgreSQL one statement) and through an ORM session's transaction (the general path, which reports
took before); it prints the thread's CPU time and the wall time per batch, medians of several rounds.

    .venv/bin/python -m bench.bench_report_writer [--batches 12 25 45] [--rounds 7] [--per-round 200]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

A third of each batch's jobs are Responses (whose keys the writer must learn), the rest readings, as
in the conversation benchmark's mix (5 readings and 3 Responses per device cycle).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bench.bench_derc import scratch_database
from bench.seeding import add_metered_site
from gridshare.store.bulk_insert import InsertBatch
from gridshare.store.db import activity_bump, bump_activity, make_engine, session_factory, upgrade
from gridshare.store.group_commit import GroupCommitWriter, Inserts, _Job
from gridshare.store.models import Response as ResponseRow
from gridshare.store.models import TelemetryReading

T0 = 1_800_000_000


def _jobs(size: int, site_id: int, mmr_id: int) -> list[_Job[Any]]:
    """A batch as the report writer gets it: a third Responses (keyed), the rest readings."""
    readings = TelemetryReading.__table__
    responses = ResponseRow.__table__
    jobs: list[_Job[Any]] = []
    for i in range(size):
        if i % 3 == 2:
            row = {
                "site_id": site_id,
                "control_id": None,
                "subject_mrid": f"{i:032X}",
                "status": 1,
                "created_s": T0,
                "received_s": T0,
            }
            jobs.append(_Job(Inserts(responses, (row,), keyed=True), Future()))
        else:
            reading = {
                "mmr_id": mmr_id,
                "time_s": T0 + i,
                "duration_s": 60,
                "value": 1500,
                "power_of_ten": 0,
                "quality_flags": None,
                "received_s": T0,
            }
            jobs.append(_Job(Inserts(readings, (reading,)), Future()))
    return jobs


def measure(url: str, sizes: list[int], rounds: int, per_round: int) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine, log_level=30)
        sessions = session_factory(engine)
        with sessions() as s, s.begin():
            metered = add_metered_site(s, lfdi="ab" * 20, now_s=T0, mup_mrid="5A" * 16, mmr_mrid="5B" * 16)
        site_id, mmr_id = metered.site_id, metered.mmr_id
        writers = {
            # what the server runs: a batch of reports handed whole to the store
            "insert batch": GroupCommitWriter(
                sessions, after_batch=bump_activity, insert_batch=InsertBatch(engine, also=(activity_bump(),))
            ),
            # the general path (and the reports' path before InsertBatch): an ORM session's transaction
            "session": GroupCommitWriter(sessions, after_batch=bump_activity),
        }
        store = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
        for size in sizes:
            jobs = _jobs(size, site_id, mmr_id)
            cpu_ms: dict[str, list[float]] = {path: [] for path in writers}
            wall_ms: dict[str, list[float]] = {path: [] for path in writers}
            for _ in range(rounds):  # the two paths alternate, so a drift of the machine hits both
                for path, writer in writers.items():
                    for _ in range(per_round // 10):  # warm the pool, the statement caches, the store
                        writer._outcomes(jobs)
                    c0, w0 = time.thread_time(), time.perf_counter()
                    for _ in range(per_round):
                        outcomes = writer._outcomes(jobs)
                    cpu_ms[path].append((time.thread_time() - c0) / per_round * 1000)
                    wall_ms[path].append((time.perf_counter() - w0) / per_round * 1000)
                    failed = [exc for *_, exc in outcomes if exc is not None]
                    if failed:
                        raise SystemExit(f"a batch failed: {failed[0]!r}")
            for path in writers:
                cpu = statistics.median(cpu_ms[path])
                print(
                    f"{store:10s} {size:3d} jobs/batch, {path:12s}: writer CPU {cpu:.3f} ms a batch "
                    f"({cpu / size * 1000:.0f} µs a report), wall {statistics.median(wall_ms[path]):.3f} ms; "
                    f"rounds {min(cpu_ms[path]):.3f} to {max(cpu_ms[path]):.3f} ms"
                )
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[12, 25, 45], help="jobs per batch")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--pg-url", default=os.environ.get("GRIDSHARE_TEST_PG_URL", ""))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridshare-writer-") as tmp:
        if not args.no_sqlite:
            measure(f"sqlite:///{Path(tmp) / 'writer.db'}", args.batches, args.rounds, args.per_round)
        if args.pg_url:
            with scratch_database(args.pg_url) as url:
                measure(url, args.batches, args.rounds, args.per_round)


if __name__ == "__main__":
    main()
