"""Per resource: one device's GET answered from the response cache vs rendered by the application.

One keep-alive mutual-TLS client (httpx, in this process) asks each resource of a device's normal cycle
`--n` times in a row: the cached answer's wall time per request, then the same request with the cache
emptied before each one (the application renders it: framework, store, encoder). The server is the
tests' in-process device port (a thread of this process), so the figures include the client's own
cost; compare the two columns, not the absolute values, and see docs/bench-conversation.md for the
whole conversation under load.

    GRIDSHARE_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
      .venv/bin/python -m bench.bench_response_cache [--n 200] [--pg]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from gridshare.certs.devpki import create_dev_pki
from gridshare.server.shared.render_cache import RenderCache
from tests.support.engine import device_with_everything
from tests.support.servers import fresh_pg_database, running_server


def measure(database_url: str, tmp: Path, n: int) -> dict[str, tuple[float, float]]:
    tmp.mkdir(parents=True, exist_ok=True)
    pki = create_dev_pki(tmp / "pki", devices=1, aggregators=1)
    with running_server(pki, database_url, tmp) as server:
        _, _, paths = device_with_everything(server)
        found: dict[str, tuple[float, float]] = {}
        with server.client("device-1", validate=False) as c:
            for path in paths:
                assert c.get(path).status_code == 200, path
                t0 = time.perf_counter()
                for _ in range(n):
                    c.get(path)
                hit_ms = (time.perf_counter() - t0) / n * 1000
                t0 = time.perf_counter()
                for _ in range(n):
                    server.ctx.cache = RenderCache()
                    c.get(path)
                rendered_ms = (time.perf_counter() - t0) / n * 1000
                found[path] = (hit_ms, rendered_ms)
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument(
        "--pg", action="store_true", help="also on PostgreSQL (a scratch database at $GRIDSHARE_TEST_PG_URL)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"SQLite": measure(f"sqlite:///{Path(tmp) / 'gs.db'}", Path(tmp) / "sqlite", args.n)}
        if args.pg:
            with fresh_pg_database() as url:
                runs["PostgreSQL"] = measure(url, Path(tmp) / "pg", args.n)
    print("| resource | " + " | ".join(f"{db} cached ms | {db} rendered ms" for db in runs) + " |")
    print("|---|" + "---:|---:|" * len(runs))
    for path in next(iter(runs.values())):
        cells = " | ".join(f"{runs[db][path][0]:.2f} | {runs[db][path][1]:.2f}" for db in runs)
        print(f"| `{path}` | {cells} |")


if __name__ == "__main__":
    main()
