"""Injectable clocks: the server asks one for "now" so the simulator can run a day in minutes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class FixedClock:
    """A clock that moves only when told to: for tests and step-wise simulation."""

    at_s: float

    def now(self) -> float:
        return self.at_s

    def advance(self, seconds: float) -> None:
        self.at_s += seconds
