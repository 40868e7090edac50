"""When each EndDevice last reached the server and how often it polls, without a write per request.

Every serving process records contacts in memory (a dict update under a lock, well under a
microsecond) and writes them to `device_contact` every `contact_flush_s` in one transaction, merging
with what other processes wrote (latest time wins, counts add up). EndDevice id 0 (an aggregator's
own) and ids that name no site are skipped; only answered requests (status < 400) count, so an
aggregator probing another's EndDevice does not make it look alive.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from gridshare.store.console_models import DeviceContact
from gridshare.store.db import transaction
from gridshare.store.models import Site

log = logging.getLogger(__name__)

#: weight of the newest interval in the smoothed poll interval
_SMOOTHING = 0.2


#: a pending entry: [first_s, last_s, resource, requests, derc_polls, last_derc_s or None]
_Pending = list


class ContactLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._last_derc: dict[int, float] = {}
        self._interval: dict[int, float] = {}
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()

    def record(self, site_id: int, resource: str, now_s: float, derc_poll: bool) -> None:
        """One answered request about this EndDevice (called on the event loop for every request)."""
        with self._lock:
            entry = self._pending.get(site_id)
            if entry is None:
                entry = self._pending[site_id] = [now_s, now_s, resource, 0, 0, None]
            entry[1] = now_s
            entry[2] = resource
            entry[3] += 1
            if derc_poll:
                entry[4] += 1
                entry[5] = now_s
                before = self._last_derc.get(site_id)
                if before is not None and now_s > before:
                    gap = now_s - before
                    old = self._interval.get(site_id)
                    self._interval[site_id] = gap if old is None else old + _SMOOTHING * (gap - old)
                self._last_derc[site_id] = now_s

    def flush(self, sessions: sessionmaker[Session]) -> int:
        """Write what was recorded since the last flush; returns how many sites were written."""
        with self._lock:
            pending, self._pending = self._pending, {}
            intervals = {k: self._interval.get(k) for k in pending}
        if not pending:
            return 0
        try:
            with transaction(sessions) as session:
                known = set(session.execute(select(Site.id).where(Site.id.in_(list(pending)))).scalars())
                rows = [
                    {
                        "site_id": site_id,
                        "first_s": int(first_s),
                        "last_s": int(last_s),
                        "last_resource": str(resource)[:64],
                        "requests": requests,
                        "derc_polls": derc_polls,
                        "last_derc_s": None if last_derc_s is None else int(last_derc_s),
                        "poll_interval_s": intervals.get(site_id),
                    }
                    for site_id, (first_s, last_s, resource, requests, derc_polls, last_derc_s) in sorted(
                        pending.items()
                    )
                    if site_id in known
                ]
                if rows:
                    session.execute(_upsert(session), rows)
            return len(rows)
        except Exception as exc:  # contact times are for operators; never let them hurt serving
            log.warning("could not store device contact times: %s", exc)
            return 0

    def start(self, sessions: sessionmaker[Session], every_s: float) -> None:
        """Flush every `every_s` seconds from a daemon thread until `stop()`."""
        if self._flusher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.flush(sessions)
            self.flush(sessions)

        self._flusher = threading.Thread(target=loop, name="contact-flush", daemon=True)
        self._flusher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=10)
            self._flusher = None


def _upsert(session: Session) -> Any:
    """INSERT ... ON CONFLICT (site_id) DO UPDATE, merging with what other processes wrote."""
    table = DeviceContact.__table__
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt: Any = postgresql.insert(table) if postgres else sqlite.insert(table)  # type: ignore[arg-type]
    greatest: Any = func.greatest if postgres else func.max
    least: Any = func.least if postgres else func.min
    new = stmt.excluded
    c = table.c
    return stmt.on_conflict_do_update(
        index_elements=[c.site_id],
        set_={
            "first_s": least(c.first_s, new.first_s),
            "last_s": greatest(c.last_s, new.last_s),
            "last_resource": new.last_resource,
            "requests": c.requests + new.requests,
            "derc_polls": c.derc_polls + new.derc_polls,
            "last_derc_s": func.coalesce(
                greatest(c.last_derc_s, new.last_derc_s), new.last_derc_s, c.last_derc_s
            ),
            "poll_interval_s": func.coalesce(new.poll_interval_s, c.poll_interval_s),
        },
    )
