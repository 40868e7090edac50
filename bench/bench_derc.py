"""Throughput of the hot path: devices polling their DERControlList over mTLS with keep-alive.

Sets up a store with DEVICES sites of 10 controls each, starts `gridshare serve` (1 and 2 workers),
checks one answer is right, then drives it from a separate load-generating process.

    .venv/bin/python -m bench.bench_derc [--devices 50] [--connections 64] [--seconds 10]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--workers 1 2]

Target (issue 2): >= 3,000 requests/s with p99 <= 50 ms on the 2-core machine.

`--feed both` runs every worker count twice in one go: with the change feed off (the publication
counter read from the store on every cached poll, as before the feed) and on (store/change_feed.py:
LISTEN/NOTIFY on PostgreSQL), printing the 1-minute load average before each run (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bench.seeding import add_controls, add_site
from gridshare.certs.devpki import create_dev_pki
from gridshare.core.settings import Settings
from gridshare.server.shared.context import build_context
from gridshare.store.db import transaction
from gridshare.store.models import ClientKind, DerProgram
from gridshare.store.queries.seed import seed_baseline
from gridshare.store.scope import ClientScope

CONTROLS_PER_SITE = 10


def prepare(workdir: Path, devices: int, database_url: str) -> tuple[Settings, dict[str, str]]:
    pki = create_dev_pki(workdir / "pki", devices=devices, aggregators=1)
    settings = Settings(
        data_dir=workdir,
        database_url=database_url,
        tls_ca_file=pki.ca_path,
        tls_cert_file=pki.server_cert_path,
        tls_key_file=pki.server_key_path,
    )
    ctx = build_context(settings)
    seed_baseline(ctx)
    now = ctx.now_s()
    targets: dict[str, str] = {}
    with transaction(ctx.sessions) as session:
        program = session.execute(select(DerProgram)).scalars().first()
        for client in pki.devices:
            scope = ClientScope(ClientKind.device, client.lfdi, client.sfdi)
            site = add_site(session, scope, client.lfdi, client.sfdi, now)
            add_controls(session, site, program, now, CONTROLS_PER_SITE, import_limit_w=10000)
            targets[client.lfdi] = f"/edev/{site.id}/derp/{program.id}/derc?l={CONTROLS_PER_SITE}"
    ctx.engine.dispose()
    return settings, targets


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """For PostgreSQL, a throw-away database next to the one named (which is left untouched)."""
    if not url.startswith("postgresql"):
        yield url
        return
    name = f"gs_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_server(
    settings: Settings, port: int, workers: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`gridshare serve` as a subprocess on 127.0.0.1:`port` with this store and PKI (stop it by PID)."""
    env = {
        **os.environ,
        "GRIDSHARE_DATA_DIR": str(settings.data_dir),
        "GRIDSHARE_DATABASE_URL": settings.effective_database_url,
        "GRIDSHARE_TLS_CA_FILE": str(settings.tls_ca_file),
        "GRIDSHARE_TLS_CERT_FILE": str(settings.tls_cert_file),
        "GRIDSHARE_TLS_KEY_FILE": str(settings.tls_key_file),
        "GRIDSHARE_PORT": str(port),
        **(extra_env or {}),
    }
    exe = Path(sys.executable).with_name("gridshare")
    return subprocess.Popen(
        [str(exe), "serve", "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(url: str, ctx: ssl.SSLContext, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            r = httpx.get(url, verify=ctx)
            if r.status_code == 200:
                return r.text
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not answer within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description="DERControlList polling throughput over mTLS")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--feed", choices=["on", "off", "both"], default="on", help="the change feed (store/change_feed.py)"
    )
    args = parser.parse_args()
    feeds = {"on": ["on"], "off": ["off"], "both": ["off", "on"]}[args.feed]
    console = Console(width=max(Console().width, 110))
    table = Table(
        title=f"GET DERControlList ({CONTROLS_PER_SITE} controls), {args.devices} devices, "
        f"{args.connections} keep-alive connections, {args.seconds:.0f} s"
    )
    for col in (
        "store",
        "workers",
        "change feed",
        "load avg",
        "requests/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
    ):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.database_url) as database_url:
        workdir = Path(tmp)
        with console.status("preparing the store"):
            settings, targets = prepare(workdir, args.devices, database_url)
        (workdir / "targets.json").write_text(json.dumps(targets))
        store = settings.effective_database_url.split(":", 1)[0]
        for workers, feed in [(w, f) for w in args.workers for f in feeds]:
            port = 20000 + os.getpid() % 20000
            load_1m = os.getloadavg()[0]
            proc = start_server(settings, port, workers, {"GRIDSHARE_CHANGE_FEED": str(feed == "on").lower()})
            try:
                first = next(iter(targets.items()))
                client = next(
                    c
                    for c in json.loads((workdir / "pki" / "clients.json").read_text())["clients"]
                    if c["lfdi"] == first[0]
                )
                ctx = ssl.create_default_context(cafile=str(settings.tls_ca_file))
                ctx.load_cert_chain(client["cert"], client["key"])
                body = wait_ready(f"https://127.0.0.1:{port}{first[1]}", ctx, proc)
                assert f'results="{CONTROLS_PER_SITE}"' in body, body[:300]
                with console.status(f"{workers} worker(s): load for {args.seconds:.0f} s"):
                    out = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "bench.loadgen",
                            "--url",
                            f"https://127.0.0.1:{port}/",
                            "--ca",
                            str(settings.tls_ca_file),
                            "--clients",
                            str(workdir / "pki" / "clients.json"),
                            "--targets",
                            str(workdir / "targets.json"),
                            "--connections",
                            str(args.connections),
                            "--seconds",
                            str(args.seconds),
                            "--expect",
                            f'results="{CONTROLS_PER_SITE}"',
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        cwd=Path(__file__).parent.parent,
                    )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                table.add_row(
                    store,
                    str(workers),
                    feed,
                    f"{load_1m:.1f}",
                    f"{result['requests_per_s']:.0f}",
                    str(result["p50_ms"]),
                    str(result["p90_ms"]),
                    str(result["p99_ms"]),
                    str(result["errors"]),
                )
                console.print(
                    json.dumps(
                        {"store": store, "workers": workers, "feed": feed, "load_1m": load_1m, **result}
                    )
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
    console.print(table)


if __name__ == "__main__":
    main()
