"""What notifications cost as the subscriber base grows: one scan, and one delivery round.

An aggregator subscribes to the DERControlList of each of its N sites (the common CSIP-AUS pattern),
each site holding a few controls. Measured on the store directly, in this process:

* first scan: every subscription is rendered and queued (what follows a restart or a mass subscribe);
* idle rescan: rendered again, nothing changed, nothing queued (what every counter move costs: the
  scheduler rests twice a scan's duration after each, see server/notify/service.py);
* device report: a telemetry post moved only the activity counter; only DER document subscriptions
  are looked at (none here), so this is what every report costs the notifier;
* one change: a new control at one site, the rescan that queues its single notification;
* delivery: the queued notifications POSTed to a loopback HTTP receiver (4 sending threads), in
  rounds of 50 as the delivery job does.

    .venv/bin/python -m bench.bench_notify [--subscriptions 100 1000 5000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench.bench_derc import scratch_database
from bench.seeding import add_controls, add_site
from gridshare.core.mrid import new_mrid
from gridshare.core.settings import Settings
from gridshare.server.notify.delivery import Delivery
from gridshare.server.notify.notifier import Notifier
from gridshare.server.shared.context import AppContext, build_context
from gridshare.store.db import bump_activity, bump_publication, transaction
from gridshare.store.models import ClientKind, DerProgram, NotificationOutbox, Site, Subscription
from gridshare.store.queries.controls import ControlValues, create_control
from gridshare.store.queries.identity import add_aggregator, register_certificate
from gridshare.store.queries.seed import seed_baseline
from gridshare.store.scope import ClientScope

CONTROLS_PER_SITE = 4
AGGREGATOR_LFDI = "A0" * 20


class _Sink(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with _Sink.lock:
            _Sink.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def seed(ctx: AppContext, sites: int, hook: str) -> None:
    seed_baseline(ctx)
    now_s = ctx.now_s()
    with transaction(ctx.sessions) as session:
        aggregator = add_aggregator(session, "bench", now_s)
        register_certificate(
            session,
            lfdi=AGGREGATOR_LFDI,
            sfdi=123456789,
            kind=ClientKind.aggregator,
            aggregator_id=aggregator.id,
            now_s=now_s,
        )
        scope = ClientScope(ClientKind.aggregator, AGGREGATOR_LFDI, 123456789, aggregator.id)
        program = session.execute(select(DerProgram)).scalars().first()
        assert program is not None
        for i in range(sites):
            lfdi = f"{i:040X}"
            site = add_site(session, scope, lfdi, i + 1, now_s)
            add_controls(session, site, program, now_s, CONTROLS_PER_SITE)
            session.add(
                Subscription(
                    aggregator_id=aggregator.id,
                    site_id=None,
                    client_lfdi=AGGREGATOR_LFDI,
                    resource_href=f"/edev/{site.id}/derp/{program.id}/derc",
                    notification_uri=hook,
                    result_limit=10,
                    created_s=now_s,
                    changed_s=now_s,
                )
            )


def deliver_all(ctx: AppContext) -> float:
    delivery = Delivery(ctx)
    try:
        t0 = time.perf_counter()
        while True:
            with ctx.sessions() as session:
                pending = session.execute(
                    select(func.count(NotificationOutbox.id)).where(NotificationOutbox.delivered_s.is_(None))
                ).scalar_one()
            if pending == 0:
                return time.perf_counter() - t0
            delivery.deliver_due()
    finally:
        delivery.close()


def measure(n: int, database_url: str) -> dict[str, float]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    try:
        with (
            tempfile.TemporaryDirectory(prefix="gridshare-notify-") as tmp,
            scratch_database(database_url) as url,
        ):
            settings = Settings(
                data_dir=Path(tmp),
                database_url=url,
                demo_network=False,
                notification_allowed_networks=["127.0.0.1/32"],  # the sink is on loopback
            )
            ctx = build_context(settings)
            seed(ctx, n, hook)
            notifier = Notifier(ctx)
            t0 = time.perf_counter()
            queued = notifier.scan()
            first_s = time.perf_counter() - t0
            assert queued == n, (queued, n)
            _Sink.received = 0
            deliver_s = deliver_all(ctx)
            assert _Sink.received == n, (_Sink.received, n)
            with transaction(ctx.sessions) as session:  # some write elsewhere moved the counter
                bump_publication(session)
            t0 = time.perf_counter()
            assert notifier.scan() == 0
            idle_s = time.perf_counter() - t0
            with transaction(ctx.sessions) as session:  # a device's telemetry post moves only this counter
                bump_activity(session)
            t0 = time.perf_counter()
            assert notifier.scan() == 0
            report_s = time.perf_counter() - t0
            with transaction(ctx.sessions) as session:
                site = session.execute(select(Site).order_by(Site.id)).scalars().first()
                program = session.execute(select(DerProgram)).scalars().first()
                create_control(
                    session,
                    site=site,
                    program=program,
                    mrid=new_mrid(0),
                    start_s=ctx.now_s() + 7200,
                    duration_s=300,
                    values=ControlValues(export_limit_w=1234),
                    now_s=ctx.now_s(),
                )
            t0 = time.perf_counter()
            assert notifier.scan() == 1
            change_s = time.perf_counter() - t0
            ctx.engine.dispose()
    finally:
        httpd.shutdown()
        httpd.server_close()
    return {"first": first_s, "idle": idle_s, "report": report_s, "change": change_s, "deliver": deliver_s}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a scratch directory")
    args = parser.parse_args()
    console = Console()
    db = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    table = Table(title=f"notifications: one DERControlList subscription per site, {db}")
    for col in (
        "subscriptions",
        "first scan s",
        "idle rescan s",
        "device report s",
        "one change s",
        "deliver all s",
        "deliveries/s",
    ):
        table.add_column(col, justify="right")
    for n in args.subscriptions:
        with console.status(f"{n} subscriptions"):
            r = measure(n, args.database_url)
        table.add_row(
            str(n),
            f"{r['first']:.2f}",
            f"{r['idle']:.2f}",
            f"{r['report']:.3f}",
            f"{r['change']:.2f}",
            f"{r['deliver']:.2f}",
            f"{n / r['deliver']:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
