"""The notifier and the delivery worker as background jobs of the `gridshare serve` parent process.

One process runs them (the serving workers do not), like the envelope engine in recompute.service.
The two jobs are separate so a slow delivery round never delays noticing the next change.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from server.context import AppContext
from server.notify.delivery import Delivery
from server.notify.notifier import Notifier

log = logging.getLogger("gridshare.notify")


class NotificationService:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.notifier = Notifier(ctx)
        self.delivery = Delivery(ctx)
        self._scheduler: BackgroundScheduler | None = None

    def scan(self) -> None:
        try:
            queued = self.notifier.scan()
        except Exception:  # notifications must never take the server down with them
            log.exception("looking for changes to notify failed; trying again next round")
            return
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
        log.info("notifications: changes checked every %.1f s, deliveries retried with backoff", every_s)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self.delivery.close()
