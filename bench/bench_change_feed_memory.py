"""What the PostgreSQL change feed costs a serving process when `change_version` holds many keys.

A million devices mean millions of change keys (`site:<id>`, `env:<site id>`, `net:<name>`). The
store is filled with N keys in one INSERT ... SELECT generate_series (a scratch database, dropped
afterwards), then, in this process:

* start: time from `PgChangeFeed(engine)` to healthy, and the growth of this process's RSS;
* reconnect: the listener's backend is terminated; time until the feed is healthy again;
* hot lookup: `current((all, key))` for one key already asked for, per call;
* working set: `current` for `--ask` distinct keys once each (a serving process meeting its devices),
  per call, and the RSS growth it leaves.

    .venv/bin/python -m bench.bench_change_feed_memory [--keys 1000000] [--ask 20000] [--database-url URL]

Run it from a checkout of another commit (PYTHONPATH=<checkout>) to compare versions of the feed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import sqlalchemy as sa

import gridshare
from bench.bench_derc import scratch_database
from gridshare.store.change_feed import ALL, PgChangeFeed, site_key
from gridshare.store.db import make_engine, upgrade


def rss_mib() -> float:
    """This process's resident set size (VmRSS), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def wait_for(check: Callable[[], bool], within_s: float = 300.0) -> float:
    """Seconds until `check()` holds (polled every millisecond)."""
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > within_s:
            raise TimeoutError(f"not within {within_s} s")
        time.sleep(0.001)
    return time.perf_counter() - t0


def fill(engine: sa.Engine, keys: int) -> float:
    """`keys` rows `site:1` .. `site:<keys>` at version 1, in one statement; seconds taken."""
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO change_version (key, version)"
                " SELECT 'site:' || g, 1 FROM generate_series(1, :n) AS g"
            ),
            {"n": keys},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE change_version"))
    return time.perf_counter() - t0


def run(url: str, keys: int, ask: int, lookups: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    print(f"gridshare from {os.path.dirname(gridshare.__file__)}; load {os.getloadavg()[0]:.2f}")
    print(f"filled change_version with {keys:,} keys in {fill(engine, keys):.1f} s")

    rss0 = rss_mib()
    feed = PgChangeFeed(engine)
    try:
        start_s = wait_for(feed.healthy)
        rss1 = rss_mib()
        print(f"start: healthy after {start_s * 1000:.0f} ms; RSS +{rss1 - rss0:.1f} MiB ({rss1:.0f} MiB)")

        pid = feed.listener_pid()
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        wait_for(lambda: not feed.healthy() or feed.listener_pid() not in (None, pid))
        back_s = wait_for(lambda: feed.healthy() and feed.listener_pid() not in (None, pid))
        print(f"reconnect: healthy again {back_s * 1000:.0f} ms after the backend was terminated")

        hot = (ALL, site_key(keys // 2))
        assert feed.current(hot)[1] == 1
        t0 = time.perf_counter()
        for _ in range(lookups):
            feed.current(hot)
        hot_us = (time.perf_counter() - t0) / lookups * 1e6
        print(f"hot lookup: {hot_us:.2f} us per current((all, key)) ({lookups:,} calls)")

        rss2 = rss_mib()
        step = max(1, keys // ask)
        asked = [site_key(1 + i * step) for i in range(ask)]
        t0 = time.perf_counter()
        for key in asked:
            feed.current((ALL, key))
        first_us = (time.perf_counter() - t0) / ask * 1e6
        t0 = time.perf_counter()
        for key in asked:
            feed.current((ALL, key))
        again_us = (time.perf_counter() - t0) / ask * 1e6
        rss3 = rss_mib()
        known = getattr(feed, "keys_known", None)
        kept = f"; {known():,} keys kept" if known else ""
        print(
            f"working set: {ask:,} distinct keys, first ask {first_us:.1f} us, again {again_us:.2f} us"
            f" per call; RSS +{rss3 - rss2:.1f} MiB{kept}"
        )
    finally:
        feed.close()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("GRIDSHARE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server; the bench creates and drops a scratch database next to this one",
    )
    parser.add_argument("--keys", type=int, default=1_000_000, help="rows in change_version")
    parser.add_argument("--ask", type=int, default=20_000, help="distinct keys asked for once each")
    parser.add_argument("--lookups", type=int, default=200_000, help="calls for the hot-key timing")
    args = parser.parse_args()
    with scratch_database(args.database_url) as url:
        run(url, args.keys, args.ask, args.lookups)


if __name__ == "__main__":
    main()
