"""Injectable clocks: the server asks one for "now" so the simulator can run a day in minutes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class AcceleratedClock:
    """Simulated time that starts at `start_s` and runs `factor` times faster than the wall clock."""

    start_s: float
    factor: float = 1.0
    _wall_origin: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return self.start_s + (time.monotonic() - self._wall_origin) * self.factor


@dataclass
class FixedClock:
    """A clock that moves only when told to: for tests and step-wise simulation."""

    at_s: float

    def now(self) -> float:
        return self.at_s

    def advance(self, seconds: float) -> None:
        self.at_s += seconds
