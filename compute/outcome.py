"""What became of each network of a batch: computed whole, or failed with a reason and no result.

A caller publishes every `Computed` network and puts every `Failed` one on its fallback at its
deadline; there is no third state, so nothing half-computed can reach a publisher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gridshare.compute.task import NetworkResult

#: Why a network has no result:
#: timeout - not back within its timeout (cancelled; a result arriving later is dropped);
#: worker lost - the workers running it died more often than the scheduler allows (allowed-failures);
#: bad input - the engine refused the input (the same input fails the same way anywhere: not retried);
#: engine error - the engine raised something else, on every try the retries allowed;
#: incomplete - a result came back that does not cover every interval and site (never published);
#: cluster unavailable - the scheduler could not be reached or went away during the batch.
FailureKind = Literal[
    "timeout", "worker lost", "bad input", "engine error", "incomplete", "cluster unavailable"
]


@dataclass(frozen=True)
class Computed:
    network: str
    result: NetworkResult
    wall_s: float  # from submission to the result in the caller's hands (queueing and transfer included)

    ok = True


@dataclass(frozen=True)
class Failed:
    network: str
    kind: FailureKind
    detail: str
    wall_s: float

    ok = False


NetworkOutcome = Computed | Failed


@dataclass(frozen=True)
class ComputeBatch:
    """A batch's outcomes in the order the tasks were given, with the two sides at hand."""

    outcomes: tuple[NetworkOutcome, ...]

    @property
    def computed(self) -> dict[str, NetworkResult]:
        return {o.network: o.result for o in self.outcomes if isinstance(o, Computed)}

    @property
    def failed(self) -> dict[str, Failed]:
        return {o.network: o for o in self.outcomes if isinstance(o, Failed)}

    @classmethod
    def of(cls, outcomes: Sequence[NetworkOutcome]) -> ComputeBatch:
        return cls(tuple(outcomes))
