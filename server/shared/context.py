"""Everything a request handler needs, built once per process and kept on `app.state.ctx`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.engine import make_url

from gridshare.core.clock import Clock, SystemClock
from gridshare.core.runtime import Runtime
from gridshare.core.settings import Settings
from gridshare.server.shared.check_cache import CheckCache
from gridshare.server.shared.contacts import ContactLog
from gridshare.server.shared.identity import ScopeCache
from gridshare.server.shared.render_cache import RenderCache
from gridshare.server.shared.self_identity import ServerIdentity, load_server_identity
from gridshare.store.db import make_engine, session_factory, store_exists, upgrade
from gridshare.store.group_commit import GroupCommitWriter


@dataclass
class AppContext(Runtime):
    """The process's runtime (settings, sessions, clock) plus what only the 2030.5 server keeps."""

    cache: RenderCache = field(default_factory=RenderCache)
    scopes: ScopeCache = field(default_factory=ScopeCache)
    #: The server's own identity (SelfDevice); None when it has no certificate of its own to show.
    self_identity: ServerIdentity | None = None
    contacts: ContactLog = field(default_factory=ContactLog)
    #: Access checks of device reports, remembered until what they read changes (fast_reports.py).
    checks: CheckCache = field(default_factory=CheckCache)
    #: The device reports' group-commit writer, made on first use (server/shared/batched_writes.py).
    report_writer: GroupCommitWriter | None = None


class StoreMissing(Exception):
    """An admin command was pointed at a database that holds no GridShare store."""


def describe_store(settings: Settings) -> str:
    """The store as an operator would look for it: the SQLite file, or the URL without its password."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return str(url.database)
    return url.render_as_string(hide_password=True)


def build_context(
    settings: Settings,
    clock: Clock | None = None,
    *,
    create: bool = True,
    schema_log: Literal["info", "debug"] = "info",
) -> AppContext:
    """Open the store (upgrading its schema); `create=False` refuses to make a new one (admin commands)."""
    if not create and not store_exists(settings.effective_database_url):
        raise StoreMissing(
            f"no GridShare store at {describe_store(settings)}: start `gridshare serve` with the same "
            "--data-dir (or GRIDSHARE_DATABASE_URL) once to create it, or point --data-dir at an existing one"
        )
    engine = make_engine(settings.effective_database_url)
    upgrade(engine, logging.INFO if schema_log == "info" else logging.DEBUG)
    clock = clock or SystemClock()
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        clock=clock,
        self_identity=load_server_identity(settings, int(clock.now())),
    )
