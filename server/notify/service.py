"""The notifier and the delivery worker as background jobs of the `gridshare serve` parent process.

One process runs them (the serving workers do not), like the envelope engine in recompute.scheduler.
The two jobs are separate so a slow delivery round never delays noticing the next change.
"""

from __future__ import annotations

import logging
import time

from apscheduler.schedulers.background import BackgroundScheduler

from gridshare.server.notify.delivery import Delivery
from gridshare.server.notify.notifier import Notifier
from gridshare.server.shared.context import AppContext

log = logging.getLogger("gridshare.notify")

#: A scan and the rest after it last this many times the scan itself (3: at most a third of a core).
SCAN_DUTY_FACTOR = 3.0
#: Scans slower than this are logged: the subscriber base has outgrown `notification_poll_s`.
SLOW_SCAN_S = 1.0


class NotificationService:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.notifier = Notifier(ctx)
        self.delivery = Delivery(ctx)
        self._scheduler: BackgroundScheduler | None = None
        self._rest_until = 0.0

    def scan(self) -> None:
        """One scheduled look for changes, resting after an expensive one.

        A scan re-renders every subscribed resource, and with many subscribers and a busy store the
        counter may move on every poll; resting twice a scan's own duration keeps the notifier under a
        third of a core however large the subscriber base, at the price of later notifications.
        """
        if time.monotonic() < self._rest_until:
            return
        started = time.monotonic()
        try:
            queued = self.notifier.scan()
        except Exception:  # notifications must never take the server down with them
            log.exception("looking for changes to notify failed; trying again next round")
            return
        finally:
            took_s = time.monotonic() - started
            self._rest_until = started + SCAN_DUTY_FACTOR * took_s
            if took_s > SLOW_SCAN_S:
                log.warning(
                    "a notification scan took %.1f s; the next one waits %.1f s",
                    took_s,
                    (SCAN_DUTY_FACTOR - 1) * took_s,
                )
        if queued:
            self.deliver()  # at once rather than next round (claims keep the two jobs from colliding)

    def deliver(self) -> None:
        try:
            self.delivery.deliver_due()
        except Exception:
            log.exception("delivering notifications failed; trying again next round")

    def start(self) -> None:
        scheduler = BackgroundScheduler(timezone="UTC")
        every_s = self.ctx.settings.notification_poll_s
        for job in (self.scan, self.deliver):
            scheduler.add_job(
                job, "interval", seconds=every_s, id=job.__name__, max_instances=1, coalesce=True
            )
        scheduler.start()
        self._scheduler = scheduler
        log.info("notifications: changes checked every %g s, deliveries retried with backoff", every_s)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self.delivery.close()
