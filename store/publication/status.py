"""Per-feeder envelope status: dynamic, stale or fallback, since when and why.

* dynamic: devices run on envelopes computed from fresh data;
* stale: the last recomputation could not publish (bad data, engine failure, database); devices run
  on the last good envelopes until they end, then on their DefaultDERControl;
* fallback: devices run on fallback-valued envelopes, or on their DefaultDERControl because the
  envelopes have ended.

Kept in memory (so the log and the engine know it even when the database is down) and in a
`server_setting` row per feeder (so the operator API, possibly another process, can read it). Every
change of state is logged in one line saying the same as the API.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gridshare.store.db import transaction
from gridshare.store.queries.runtime_settings import store_setting
from gridshare.store.runtime_settings import ServerSetting

log = logging.getLogger("gridshare.feeder")

DYNAMIC, STALE, FALLBACK = "dynamic", "stale", "fallback"
STATES = (DYNAMIC, STALE, FALLBACK)
KEY_PREFIX = "feeder_status."


@dataclass(frozen=True)
class FeederStatus:
    feeder: str  # the network's name
    state: str
    since_s: int  # when the feeder entered this state
    reason: str  # why it is in this state (the latest reason while it stays there)
    detail: str = ""
    network_id: int | None = None
    envelopes_until_s: int | None = None  # when the published envelopes end
    fallback_sites: int | None = None  # sites on fallback-valued envelopes, when only some are
    updated_s: int = 0
    #: network site id -> why: sites held at their fallback limits while the feeder stays dynamic
    site_fallbacks: dict[str, str] | None = None

    def line(self) -> str:
        """The one log line for this status (the operator API says the same)."""
        since = datetime.fromtimestamp(self.since_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = f"feeder {self.feeder}: {self.state} since {since}: {self.reason}"
        return f"{text} ({self.detail})" if self.detail else text


def effective(status: FeederStatus, now_s: int) -> FeederStatus:
    """What devices are on now: envelopes that have ended leave them on their DefaultDERControl.

    Computed when read, so a server whose engine has stopped still reports the truth.
    """
    until = status.envelopes_until_s
    if status.state != FALLBACK and until is not None and now_s >= until:
        return replace(
            status,
            state=FALLBACK,
            since_s=until,
            reason="the published envelopes have ended: devices are on their DefaultDERControl",
            detail=f"was {status.state}: {status.reason}",
        )
    return status


def read_statuses(session: Session) -> list[FeederStatus]:
    rows = session.execute(select(ServerSetting).where(ServerSetting.key.startswith(KEY_PREFIX))).scalars()
    return sorted((_status(r.value) for r in rows), key=lambda s: s.feeder)


def _status(value: dict[str, object]) -> FeederStatus:
    """A stored status, ignoring fields a newer or older version wrote that this one does not know."""
    return FeederStatus(**{k: v for k, v in value.items() if k in FeederStatus.__dataclass_fields__})  # type: ignore[arg-type]


class StatusBoard:
    """The engine's view of every feeder, written through to the store when it changes."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._known: dict[str, FeederStatus] = {}

    def get(self, feeder: str) -> FeederStatus | None:
        if feeder not in self._known:
            try:
                with self._sessions() as session:
                    row = session.get(ServerSetting, KEY_PREFIX + feeder)
                    if row is not None:
                        self._known[feeder] = _status(row.value)
            except Exception:
                log.exception("could not read the status of feeder %s", feeder)
        return self._known.get(feeder)

    def set(
        self,
        feeder: str,
        state: str,
        reason: str,
        now_s: int,
        *,
        detail: str = "",
        network_id: int | None = None,
        envelopes_until_s: int | None = None,
        fallback_sites: int | None = None,
        since_s: int | None = None,
        site_fallbacks: dict[str, str] | None = None,
    ) -> FeederStatus:
        """Record the feeder's state; log one line when it changes; write the store when anything does."""
        if state not in STATES:
            raise ValueError(f"unknown feeder state {state!r}")
        before = self.get(feeder)
        entered = before is None or before.state != state
        status = FeederStatus(
            feeder=feeder,
            state=state,
            since_s=(since_s if since_s is not None else now_s)
            if entered or before is None
            else before.since_s,
            reason=reason,
            detail=detail,
            network_id=network_id,
            envelopes_until_s=envelopes_until_s,
            fallback_sites=fallback_sites,
            updated_s=now_s,
            site_fallbacks=site_fallbacks,
        )
        self._known[feeder] = status
        if entered:
            was = f" (was {before.state})" if before is not None else ""
            (log.info if state == DYNAMIC else log.warning)("%s%s", status.line(), was)
        if before is not None and replace(before, updated_s=now_s) == status:
            return status
        try:
            with transaction(self._sessions) as session:
                # operator-facing only: a publication's status must not invalidate every device's cached
                # bodies (the console's refresh marker watches these rows' changed_s)
                store_setting(session, KEY_PREFIX + feeder, asdict(status), now_s)
        except Exception as exc:  # the engine's state must not depend on the database it reports on
            log.error("could not store the status of feeder %s: %s", feeder, exc)
        return status
