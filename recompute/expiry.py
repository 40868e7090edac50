"""The feeder's status as time passes: published envelopes that end with nothing after them."""

from __future__ import annotations

from gridshare.recompute.state import EngineState
from gridshare.store.publication.status import effective


def check_expiry(state: EngineState, now_s: int) -> None:
    """Log (and store) the moment published envelopes end with nothing after them."""
    if state.feeder is None:
        return
    status = state.status.get(state.feeder)
    if status is None:
        return
    now = effective(status, now_s)
    if now.state != status.state:
        state.status.set(
            status.feeder,
            now.state,
            now.reason,
            now_s,
            detail=now.detail,
            network_id=status.network_id,
            envelopes_until_s=status.envelopes_until_s,
            since_s=now.since_s,
        )
