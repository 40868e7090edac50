"""Run-time setting overrides (poll rates, MirrorUsagePoint post rate, engine requests).

Overrides win over the configured settings and survive restarts; each change bumps the publication
counter so every serving process re-reads them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.store.db import bump_publication
from gridshare.store.models import MirrorUsagePoint
from gridshare.store.runtime_settings import ServerSetting

#: ServerSetting keys: one poll rate per resource, and the telemetry post rate of MirrorUsagePoints.
POLL_RATE_KEY = "poll_rate_s."
MUP_POST_RATE_KEY = "mup_post_rate_s"


def settings_with_prefix(session: Session, prefix: str) -> dict[str, Any]:
    rows = session.execute(select(ServerSetting).where(ServerSetting.key.startswith(prefix))).scalars()
    return {row.key[len(prefix) :]: row.value for row in rows}


def get_setting(session: Session, key: str) -> Any:
    row = session.get(ServerSetting, key)
    return None if row is None else row.value


def set_setting(session: Session, key: str, value: Any, now_s: int) -> None:
    """Store (or with None, remove) an override; clients see it on their next request."""
    store_setting(session, key, value, now_s)
    bump_publication(session)


def store_setting(session: Session, key: str, value: Any, now_s: int) -> None:
    """Store (or with None, remove) a row no device sees (the engine's feeder status): no publication
    bump, so writing it leaves every cached device body valid."""
    row = session.get(ServerSetting, key)
    if value is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(ServerSetting(key=key, value=value, changed_s=now_s))
    else:
        row.value, row.changed_s = value, now_s
    session.flush()


def poll_rate_overrides(session: Session) -> dict[str, int]:
    """Poll rates an operator set at run time, by resource (dcap, edev, fsa, derp, der, mup)."""
    return {k: int(v) for k, v in settings_with_prefix(session, POLL_RATE_KEY).items()}


def set_mup_post_rate(session: Session, post_rate_s: int | None, now_s: int) -> int:
    """Store the MirrorUsagePoint post rate and apply it to every existing MirrorUsagePoint.

    Each MUP carries its own `post_rate_s`, which the wire layer prefers, so existing MUPs advertise the
    new rate on their next read. Returns how many MUPs were updated.
    """
    set_setting(session, MUP_POST_RATE_KEY, post_rate_s, now_s)
    mups = session.execute(select(MirrorUsagePoint)).scalars().all()
    for mup in mups:
        mup.post_rate_s = post_rate_s
        mup.changed_s = now_s
    bump_publication(session)
    return len(mups)
