"""What every long-lived part of GridShare runs on: settings, the store's sessions and the clock.

The engine, the notifier and the request handlers all take one of these, built once per process by
whoever composes it (process/), so none of them reaches up for another's context. The clock is
injectable: the simulator runs the same code on simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gridshare.core.clock import Clock
from gridshare.core.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock

    def now_s(self) -> int:
        """Whole seconds on this process's clock (the simulated one under the simulator)."""
        return int(self.clock.now())
