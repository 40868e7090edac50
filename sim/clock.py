"""A simulated clock the simulator and the server it spawned read alike, across processes.

Once running it is simulated time `factor` times faster than the wall clock, held in shared
memory: frozen at its start while the fleet registers and the first envelopes are computed (so setup costs no
simulated time), then started by the simulator for both processes at once. CLOCK_MONOTONIC is
machine-wide on Linux, so one origin serves both sides. The server takes it through
`server.shared.context.build_context(settings, clock)`.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
from typing import Any


class SharedClock:
    def __init__(self, start_s: float, factor: float = 1.0, mp_context: Any = None) -> None:
        ctx = mp_context or multiprocessing.get_context("spawn")
        self.factor = float(factor)
        self._start = ctx.RawValue("d", float(start_s))
        self._origin = ctx.RawValue("d", math.nan)

    @property
    def start_s(self) -> float:
        return self._start.value

    @property
    def running(self) -> bool:
        return not math.isnan(self._origin.value)

    def now(self) -> float:
        """Simulated seconds since the Unix epoch (UTC)."""
        origin = self._origin.value
        if math.isnan(origin):
            return self._start.value
        return self._start.value + (time.monotonic() - origin) * self.factor

    def run(self) -> None:
        """Start simulated time flowing from `start_s`, for every process holding this clock."""
        if not self.running:
            self._origin.value = time.monotonic()

    def wall_seconds_until(self, t_s: float) -> float:
        return max((t_s - self.now()) / self.factor, 0.0)

    async def sleep_until(self, t_s: float) -> None:
        """Sleep (asyncio) until simulated time `t_s`; returns at once if it has passed."""
        while True:
            wait = self.wall_seconds_until(t_s)
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, 1.0))
