"""Prometheus metrics of the device port: requests and latency per IEEE 2030.5 resource, cache hits.

The raw-ASGI front (server/shared/fastpath.py) counts every request into plain in-memory tallies (a dict
increment and a bisect: well under a microsecond on the polling hot path; prometheus-client's own
Histogram costs several). `gridshare serve --workers N` serves from N processes: each worker writes its
cumulative tallies to `data_dir/metrics/device-<pid>.json` every second (`start_sharing`), and
`/metrics` adds its own live tallies to every other worker's file. A worker that has stopped keeps its
file (its counts happened); the directory is emptied when the server starts. The store-derived figures
(recomputations, publication age, devices, compliance, notifications) are read from the database at
scrape time (server/operator/metrics_view.py).
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

log = logging.getLogger(__name__)

METRICS_DIR_ENV = "GRIDSHARE_METRICS_DIR"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SHARE_EVERY_S = 1.0


class DeviceMetrics:
    """Cumulative tallies of one process. Written only from the event loop thread (the ASGI front)."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, int]] = {}  # resource -> status code -> count
        #: resource -> [count per bucket (last: above the largest bound)..., sum of seconds]
        self.latency: dict[str, list[float]] = {}
        self.cache = {"hit": 0, "miss": 0}
        #: resource -> [hits, misses] of the response cache, for every resource it keeps
        self.resource_cache: dict[str, list[int]] = {}
        #: The report writer's (transactions committed, reports they held), read when shared.
        self.report_batches: Callable[[], tuple[int, int]] | None = None

    def cache_result(self, resource: str, hit: bool) -> None:
        tally = self.resource_cache.get(resource)
        if tally is None:
            tally = self.resource_cache[resource] = [0, 0]
        tally[0 if hit else 1] += 1
        if resource == "DERControlList":  # also gridshare_derc_cache_requests, as before
            self.cache["hit" if hit else "miss"] += 1

    def observe(self, resource: str, status: int, seconds: float) -> None:
        codes = self.requests.get(resource)
        if codes is None:
            codes = self.requests[resource] = {}
        code = str(status)
        codes[code] = codes.get(code, 0) + 1
        tally = self.latency.get(resource)
        if tally is None:
            tally = self.latency[resource] = [0.0] * (len(LATENCY_BUCKETS_S) + 2)
        tally[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        tally[-1] += seconds

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": {r: dict(c) for r, c in list(self.requests.items())},
            "latency": {r: list(t) for r, t in list(self.latency.items())},
            "cache": dict(self.cache),
            "resource_cache": {r: list(t) for r, t in list(self.resource_cache.items())},
            "report_batches": list(self.report_batches()) if self.report_batches else [0, 0],
        }


#: This process's tallies (one device application per serving process).
PROCESS = DeviceMetrics()


def use_metrics_dir(directory: Path) -> None:
    """Before worker processes start: an empty directory for their tallies, named in the environment."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[METRICS_DIR_ENV] = str(directory)


def _own_file(directory: str) -> Path:
    return Path(directory) / f"device-{os.getpid()}.json"


def start_sharing(stop: threading.Event) -> None:
    """In a worker of a multi-process server: write this process's tallies every second until `stop`."""
    directory = os.environ.get(METRICS_DIR_ENV)
    if not directory:
        return

    def loop() -> None:
        target = _own_file(directory)
        while True:
            try:
                tmp = target.with_suffix(".tmp")
                tmp.write_text(json.dumps(PROCESS.snapshot()))
                tmp.replace(target)  # readers see the old file or the new one, never half of one
            except OSError as exc:
                log.warning("could not share device metrics: %s", exc)
            if stop.wait(SHARE_EVERY_S):
                return

    threading.Thread(target=loop, name="metrics-share", daemon=True).start()


def _all_snapshots() -> list[dict[str, object]]:
    snaps = [PROCESS.snapshot()]
    directory = os.environ.get(METRICS_DIR_ENV)
    if directory and Path(directory).is_dir():
        mine = _own_file(directory)
        for path in sorted(Path(directory).glob("device-*.json")):
            if path == mine:
                continue
            try:
                snaps.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a worker writing its first file; its counts show on the next scrape
    return snaps


def device_metric_families() -> Iterator[Metric]:
    """The device port's metrics, summed over every worker of this server."""
    requests: dict[tuple[str, str], float] = {}
    latency: dict[str, list[float]] = {}
    cache = {"hit": 0.0, "miss": 0.0}
    by_resource: dict[str, list[float]] = {}
    batches = [0.0, 0.0]
    for snap in _all_snapshots():
        shared: list[float] = snap.get("report_batches", [0, 0])  # type: ignore[assignment]
        for i, v in enumerate(shared):
            batches[i] += v
        for resource, codes in snap.get("requests", {}).items():  # type: ignore[attr-defined]
            for code, n in codes.items():
                requests[(resource, code)] = requests.get((resource, code), 0) + n
        for resource, tally in snap.get("latency", {}).items():  # type: ignore[attr-defined]
            total = latency.setdefault(resource, [0.0] * (len(LATENCY_BUCKETS_S) + 2))
            for i, v in enumerate(tally):
                total[i] += v
        for k, v in snap.get("cache", {}).items():  # type: ignore[attr-defined]
            cache[k] = cache.get(k, 0.0) + v
        for resource, (hit, miss) in snap.get("resource_cache", {}).items():  # type: ignore[attr-defined]
            total = by_resource.setdefault(resource, [0.0, 0.0])
            total[0] += hit
            total[1] += miss
    family = CounterMetricFamily(
        "gridshare_device_requests",
        "Requests answered on the CSIP-AUS port, by IEEE 2030.5 resource and HTTP status.",
        labels=["resource", "code"],
    )
    for (resource, code), n in sorted(requests.items()):
        family.add_metric([resource, code], n)
    yield family
    histogram = HistogramMetricFamily(
        "gridshare_device_request_duration_seconds",
        "Time from request to the end of the answer on the CSIP-AUS port, by resource.",
        labels=["resource"],
    )
    for resource, tally in sorted(latency.items()):
        running, buckets = 0.0, []
        for bound, n in zip((*LATENCY_BUCKETS_S, float("inf")), tally[:-1], strict=True):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        histogram.add_metric([resource], buckets, sum_value=tally[-1])
    yield histogram
    hits = CounterMetricFamily(
        "gridshare_derc_cache_requests",
        "DERControlList GETs answered from the render cache (hit) or by the application (miss).",
        labels=["result"],
    )
    for k in ("hit", "miss"):
        hits.add_metric([k], cache.get(k, 0.0))
    yield hits
    per_resource = CounterMetricFamily(
        "gridshare_cache_requests",
        "Device GETs of cacheable resources answered from the response cache (hit) or by the "
        "application (miss), by IEEE 2030.5 resource.",
        labels=["resource", "result"],
    )
    for resource, (hit, miss) in sorted(by_resource.items()):
        per_resource.add_metric([resource, "hit"], hit)
        per_resource.add_metric([resource, "miss"], miss)
    yield per_resource
    transactions = CounterMetricFamily(
        "gridshare_report_transactions",
        "Transactions the report writers committed; reports committed over this is the batch size "
        "(a few: the store is keeping up; near report_linger_ms's worth of reports: it is busy).",
    )
    transactions.add_metric([], batches[0])
    yield transactions
    committed = CounterMetricFamily(
        "gridshare_reports_committed", "Device reports (readings, Responses) committed by the report writers."
    )
    committed.add_metric([], batches[1])
    yield committed
