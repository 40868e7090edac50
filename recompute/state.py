"""What the engine's jobs for one network share within one process: the runtime, the right to
publish, what is covered.

A run, the failure policy and the deadline watch of one network each hold this one object, so what one
of them learns (a set was published and covers these changes) the others see. Every network has its
own (recompute/scheduler.py); the publisher lock and the status board are shared by all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gridshare.core.runtime import Runtime
from gridshare.recompute.deadlines import Coverage, DeadlineBook
from gridshare.store.publication.lease import Publisher
from gridshare.store.publication.status import StatusBoard


@dataclass
class EngineState:
    ctx: Runtime
    publisher: Publisher
    status: StatusBoard
    #: the network (by name) these jobs recompute and publish
    network: str
    deadlines: DeadlineBook = field(default_factory=DeadlineBook)
    #: what the current published set covers (None: unknown, so every change counts as pending)
    coverage: Coverage | None = None
    #: the feeder's name for status and logs (the network's name)
    feeder: str | None = None
    #: the constraints' fingerprint the last run read (the watch recomputes when it moves)
    inputs_seen: tuple[object, ...] | None = None

    def covered(self, coverage: Coverage) -> None:
        """A set covering `coverage` is published: the changes it covers need no deadline any more."""
        self.coverage = coverage.union(self.coverage)
        self.deadlines.forget_covered(self.coverage)

    def latest_end_s(self, now_s: int) -> int:
        """No published block may end later than one horizon (plus the running interval) from now."""
        settings = self.ctx.settings
        return now_s + settings.envelope_horizon_s + settings.envelope_interval_s
