"""Everything a request handler needs, built once per process and kept on `app.state.ctx`."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gridshare.core.clock import Clock
from gridshare.core.settings import Settings
from gridshare.server.shared.contacts import ContactLog
from gridshare.server.shared.identity import ScopeCache
from gridshare.server.shared.render_cache import RenderCache
from gridshare.server.shared.self_identity import ServerIdentity


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    cache: RenderCache = field(default_factory=RenderCache)
    scopes: ScopeCache = field(default_factory=ScopeCache)
    #: The server's own identity (SelfDevice); None when it has no certificate of its own to show.
    self_identity: ServerIdentity | None = None
    contacts: ContactLog = field(default_factory=ContactLog)

    def now_s(self) -> int:
        return int(self.clock.now())
