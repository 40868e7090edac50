"""`GET /metrics` on the operator listener: Prometheus text for the device port and the whole system.

Two sources, so that every figure is right however many processes serve:

* per-request figures of the device port (requests and latency per resource, render-cache hits), kept
  by each serving process and added up across workers by prometheus-client (server/shared/metrics.py);
* everything the store knows, read at scrape time (at most every `SCRAPE_CACHE_S`): recomputations per
  network and outcome, how long the last one took, the age of the current publication, feeder state,
  devices polling / late / presumed on fallback / never connected, non-compliant sites (last 24 h),
  the notification backlog and failing subscribers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from gridshare.server.operator.services import compliance, fleet
from gridshare.server.operator.services.networks import list_networks
from gridshare.server.operator.services.sites import LATE, NEVER, POLLING, PRESUMED_FALLBACK
from gridshare.server.shared.context import AppContext
from gridshare.server.shared.metrics import device_metric_families
from gridshare.store.models import EnvelopeSetRecord, NetworkModel, NotificationOutbox
from gridshare.store.publication.envelopes import current_sets
from gridshare.store.publication.status import STATES, effective, read_statuses
from gridshare.store.queries.console import current_set, set_counts
from gridshare.store.queries.networks import last_recomputation
from gridshare.store.queries.notification_views import outbox_summary

SCRAPE_CACHE_S = 10.0


class StoreCollector(Collector):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > SCRAPE_CACHE_S:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        ctx = self.ctx
        now = ctx.now_s()
        ctx.contacts.flush(ctx.sessions)
        out: list[Metric] = []
        with ctx.sessions() as session:
            # Labelled by network name: a network's versions (ratings, moved sites) count as one.
            names = dict(session.execute(select(NetworkModel.id, NetworkModel.name)).all())
            runs = CounterMetricFamily(
                "gridshare_recomputations",
                "Envelope recomputations recorded, by network and outcome (published, skipped, failed).",
                labels=["network", "status"],
            )
            counts_by_name: dict[tuple[str, str], int] = {}
            for network_id, status, count in set_counts(session):
                key = (names.get(network_id, "unknown") if network_id else "unknown", status)
                counts_by_name[key] = counts_by_name.get(key, 0) + count
            for (name, status), count in sorted(counts_by_name.items()):
                runs.add_metric([name, status], count)
            out.append(runs)
            duration = GaugeMetricFamily(
                "gridshare_recomputation_duration_seconds",
                "Compute and publish time of the newest published recomputation, by network.",
                labels=["network", "phase"],
            )
            for name in sorted(set(names.values())):
                newest = last_recomputation(session, name, "published")
                last = newest.detail if newest is not None else None
                if last and "compute_s" in last:
                    duration.add_metric([name, "compute"], float(last["compute_s"]))
                    duration.add_metric([name, "publish"], float(last.get("publish_s", 0.0)))
            out.append(duration)
            last_run = GaugeMetricFamily(
                "gridshare_recomputation_last_timestamp_seconds",
                "When each outcome last happened, by network (Unix time).",
                labels=["network", "status"],
            )
            latest: dict[tuple[str, str], int] = {}
            for network_id, status, at_s in session.execute(
                select(
                    EnvelopeSetRecord.network_id,
                    EnvelopeSetRecord.status,
                    func.max(EnvelopeSetRecord.created_s),
                ).group_by(EnvelopeSetRecord.network_id, EnvelopeSetRecord.status)
            ).all():
                key = (names.get(network_id, "unknown") if network_id else "unknown", status)
                latest[key] = max(latest.get(key, 0), int(at_s))
            for (name, status), at_s in sorted(latest.items()):
                last_run.add_metric([name, status], at_s)
            out.append(last_run)
            age = GaugeMetricFamily(
                "gridshare_publication_age_seconds",
                "Age of the envelope set devices see now.",
                labels=["network"],
            )
            for network in current_sets(session):
                record = current_set(session, network)
                if record is not None:
                    age.add_metric([network], max(0, now - record.created_s))
            out.append(age)
            state = GaugeMetricFamily(
                "gridshare_feeder_state",
                "1 for the state devices of a network are in now.",
                labels=["network", "state"],
            )
            for feeder in read_statuses(session):
                current = effective(feeder, now).state
                for s in STATES:
                    state.add_metric([feeder.feeder, s], 1.0 if s == current else 0.0)
            out.append(state)
            rows = fleet.fleet(session, ctx.settings, now)
            devices = GaugeMetricFamily(
                "gridshare_devices", "EndDevices by contact state.", labels=["network", "state"]
            )
            counts: dict[tuple[str, str], int] = {}
            for r in rows:
                key = (r.network or "", r.contact.state)
                counts[key] = counts.get(key, 0) + 1
            for net in [*(n.name for n in list_networks(session)), ""]:
                for s in (POLLING, LATE, PRESUMED_FALLBACK, NEVER):
                    devices.add_metric([net, s.replace(" ", "_")], counts.get((net, s), 0))
            out.append(devices)
            out.append(
                GaugeMetricFamily(
                    "gridshare_devices_polling",
                    "EndDevices that reached the server within 3 DERControlList poll periods.",
                    value=sum(1 for r in rows if r.contact.state == POLLING),
                )
            )
            out.append(
                GaugeMetricFamily(
                    "gridshare_devices_presumed_on_fallback",
                    "EndDevices silent for longer than device_fallback_timeout_s.",
                    value=sum(1 for r in rows if r.contact.state == PRESUMED_FALLBACK),
                )
            )
            results = compliance.fleet_compliance(session, ctx.settings, now - 86400, now)
            out.append(
                GaugeMetricFamily(
                    "gridshare_sites_non_compliant",
                    "Sites with at least one breach of their limits in the last 24 h.",
                    value=sum(1 for r in results if r.breaches),
                )
            )
            summary = outbox_summary(session, now)
            backlog = GaugeMetricFamily(
                "gridshare_notifications_backlog", "Notifications not yet delivered.", labels=["state"]
            )
            backlog.add_metric(["due"], summary.in_progress)
            backlog.add_metric(["waiting_retry"], summary.waiting_retry)
            out.append(backlog)
            out.append(
                GaugeMetricFamily(
                    "gridshare_subscriptions_failing",
                    "Subscriptions whose deliveries keep failing.",
                    value=summary.failed_subscriptions,
                )
            )
            abandoned = session.execute(
                select(func.count(NotificationOutbox.id)).where(NotificationOutbox.abandoned_s.is_not(None))
            ).scalar_one()
            out.append(
                CounterMetricFamily(
                    "gridshare_notifications_abandoned",
                    "Notifications dropped after notification_max_attempts (kept a week).",
                    value=abandoned,
                )
            )
        return out


class DeviceCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from device_metric_families()


def install_metrics(app: FastAPI) -> None:
    registry = CollectorRegistry()
    registry.register(DeviceCollector())
    registry.register(StoreCollector(app.state.ctx))

    @app.get("/metrics", include_in_schema=False)
    def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
