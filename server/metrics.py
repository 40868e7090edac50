"""Prometheus metrics of the device port: requests and latency per IEEE 2030.5 resource, cache hits.

Counted in the raw-ASGI front (server/fastpath.py) with pre-bound metric children, a few microseconds
a request. `gridshare serve --workers N` serves from N processes: `use_multiprocess_dir` (called
before the workers start) puts prometheus-client in its multiprocess mode, where each process writes
its values to memory-mapped files in one directory and the `/metrics` endpoint adds them up. The
store-derived figures (recomputations, publication age, devices, compliance, notifications) are read
from the database at scrape time (server/operator/metrics_view.py), so they are right however many
processes or servers share it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

REQUESTS = Counter(
    "gridshare_device_requests",
    "Requests answered on the CSIP-AUS port, by IEEE 2030.5 resource and HTTP status.",
    ["resource", "code"],
)
LATENCY = Histogram(
    "gridshare_device_request_duration_seconds",
    "Time from request to the end of the answer on the CSIP-AUS port, by resource.",
    ["resource"],
    buckets=LATENCY_BUCKETS_S,
)
DERC_CACHE = Counter(
    "gridshare_derc_cache_requests",
    "DERControlList GETs answered from the render cache (hit) or by the application (miss).",
    ["result"],
)


class DeviceMetrics:
    """Pre-bound children so that counting a request is two dict lookups and two increments."""

    def __init__(self) -> None:
        self._latency: dict[str, Any] = {}
        self._requests: dict[tuple[str, int], Any] = {}
        self.cache_hit = DERC_CACHE.labels("hit")
        self.cache_miss = DERC_CACHE.labels("miss")

    def observe(self, resource: str, status: int, seconds: float) -> None:
        key = (resource, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = REQUESTS.labels(resource, str(status))
        child.inc()
        latency = self._latency.get(resource)
        if latency is None:
            latency = self._latency[resource] = LATENCY.labels(resource)
        latency.observe(seconds)


def use_multiprocess_dir(directory: Path) -> None:
    """Before worker processes start: an empty directory for their metric files, named in the environment.

    Spawned workers import prometheus-client after this, so they write to the shared files.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def device_metrics_text() -> bytes:
    """The device-port metrics of this process, or of every worker in multiprocess mode."""
    from prometheus_client import REGISTRY

    directory = os.environ.get(MULTIPROC_ENV)
    if directory and Path(directory).is_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
