"""Two notifiers on one database (two publisher/notifier processes, or a standby): nothing is sent twice.

A deployment should run one process with the notify role (docs/deployment.md), but a second one (a
failover standby started early, or an operator's mistake) must not make subscribers receive duplicates.
The notifier queues a change only if the subscription's last queued hash is still the one it read
(compare-and-set), and delivery claims each outbox row before sending it. Here two notifiers, each with
its own engine and connection pool as two processes would have, scan and deliver at the same moment
after every change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import func, select

from gridshare.server.notify.delivery import Delivery
from gridshare.server.notify.notifier import Notifier
from gridshare.server.shared.context import build_context
from gridshare.store.models import NotificationOutbox
from gridshare.store.queries.notification_views import seen
from tests.support.servers import T0, RunningServer
from tests.support.subscriptions import (
    Receiver,
    add_control,
    aggregator_site,
    controls_in,
    subscribe,
)

SITES = 4
CHANGES = 5


def _together(jobs: list[Callable[[], object]]) -> list[object]:
    """Run the jobs in threads released at the same instant; re-raise the first failure."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_two_notifiers_on_one_database_send_each_notification_once(
    server: RunningServer, receiver: Receiver
) -> None:
    second = build_context(server.ctx.settings, server.clock)  # another process: own engine and pool
    notifiers = [Notifier(server.ctx), Notifier(second)]
    deliveries = [Delivery(server.ctx), Delivery(second)]
    try:
        sites = [aggregator_site(server, lfdi=f"{n:040X}") for n in range(1, SITES + 1)]
        for site in sites:
            subscribe(server, f"/edev/{site}/derp/1/derc", receiver.url(f"/hook/{site}"))

        def pump(i: int) -> Callable[[], object]:
            return lambda: (notifiers[i].scan(), deliveries[i].deliver_due())

        rounds = [_together([pump(0), pump(1)])]  # the first representation of each
        for n in range(CHANGES):
            for site in sites:
                add_control(server, site, T0 + 3600 * (n + 1), export_limit_w=1000 + 100 * n)
            rounds.append(_together([pump(0), pump(1)]))
        for i in (0, 1):  # whatever a claim deferred in the last round goes out now, still once
            deliveries[i].deliver_due()

        queued = [sum(r[i][0] for r in rounds) for i in (0, 1)]  # type: ignore[index]
        assert sum(queued) == SITES * (1 + CHANGES)  # between them, each change queued exactly once
        for site in sites:
            got = receiver.at(f"/hook/{site}")
            assert len(got) == 1 + CHANGES, [len(controls_in(g.xml())) for g in got]
            # in order, each one a new state: 0, 1, 2 ... controls
            assert [len(controls_in(g.xml())) for g in got] == list(range(CHANGES + 1))
        with server.ctx.sessions() as s:
            rows = s.execute(select(func.count()).select_from(NotificationOutbox)).scalar_one()
            delivered = s.execute(
                select(func.count()).where(NotificationOutbox.delivered_s.is_not(None))
            ).scalar_one()
            assert rows == delivered == SITES * (1 + CHANGES)
            # the caught-up mark belongs to the newest scan, whichever notifier finished last
            with server.ctx.sessions() as fresh:
                marks = seen(fresh)
            assert marks is not None and marks[0] >= 1
    finally:
        for d in deliveries:
            d.close()
        second.engine.dispose()
