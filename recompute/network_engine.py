"""One network's share of the engine: its run, failure policy and deadline watch.

Each network in the store gets one, so a network is recomputed, falls back and meets its derate
deadlines on its own; the publisher lock, the status board, the time budget and the compute cluster
are shared by all of them (recompute/scheduler.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gridshare.compute.cluster import ComputeCluster
from gridshare.core.runtime import Runtime
from gridshare.recompute.budget import BudgetRunner
from gridshare.recompute.deadline_watch import DeadlineWatch
from gridshare.recompute.failure import FallbackPolicy
from gridshare.recompute.run import EnvelopeRun, ForecastSource
from gridshare.recompute.state import EngineState
from gridshare.store.publication.lease import Publisher
from gridshare.store.publication.status import StatusBoard


class NetworkEngine:
    """The jobs of network `name`, sharing one EngineState."""

    def __init__(
        self,
        ctx: Runtime,
        name: str,
        publisher: Publisher,
        status: StatusBoard,
        budget: BudgetRunner,
        forecast_source: ForecastSource | None,
        cluster: Callable[[], ComputeCluster],
    ) -> None:
        self.name = name
        self.state = EngineState(ctx, publisher, status, network=name, feeder=name)
        self.policy = FallbackPolicy(self.state)
        self.deadlines = DeadlineWatch(self.state, self.policy)
        self.run = EnvelopeRun(self.state, self.policy, budget, forecast_source, cluster)
        #: One run of this network at a time (the schedule and the watch may both want one)
        self.lock = threading.Lock()
