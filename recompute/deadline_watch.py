"""Derates and outages by their deadline: fallback envelopes for a change not yet in published envelopes.

A derate or outage that is not in published envelopes within `derate_deadline_s` of being entered
gets fallback envelopes for the sites behind it at once (recompute/deadlines.py keeps the book):
checked on the engine's clock by a ticker that no running computation blocks, and recovered from
the store after a restart or a takeover.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from gridshare.grid.derates import derate_factor
from gridshare.recompute.deadlines import (
    Change,
    Coverage,
    newest_marks,
    published_coverage,
    uncovered_changes,
)
from gridshare.recompute.failure import FallbackPolicy
from gridshare.recompute.fallback_plan import sites_behind
from gridshare.recompute.snapshot import read_constraints
from gridshare.recompute.state import EngineState
from gridshare.store.publication.status import FALLBACK

log = logging.getLogger("gridshare.recompute")


class DeadlineWatch:
    def __init__(self, state: EngineState, policy: FallbackPolicy) -> None:
        self.state = state
        self.policy = policy
        self._lock = threading.Lock()  # the ticker and a starting run may both look: one publishes

    def took_over(self) -> None:
        """A new epoch: forget what this instance knew, and learn from the store what is unpublished."""
        state = self.state
        state.deadlines.clear()
        state.coverage = None
        try:
            with state.ctx.sessions() as session:
                state.coverage = published_coverage(session, state.network)
        except Exception:
            log.exception("could not read what the published envelopes cover; every change counts as pending")
        self.discover()

    def discover(self) -> list[Change]:
        """Give every change the published envelopes do not cover yet its deadline; returns new ones.

        Cheap while nothing changed (two index lookups); only the publisher keeps deadlines.
        """
        state = self.state
        if state.publisher.epoch is None:
            return []
        try:
            with state.ctx.sessions() as session:
                marks = newest_marks(session, state.network)
                coverage = state.coverage
                if coverage is not None and marks.union(coverage) == coverage:
                    return []
                changes = uncovered_changes(session, state.network, coverage)
        except Exception:
            log.exception("could not look for unpublished changes")
            return []
        deadline_s = state.ctx.settings.derate_deadline_s
        added = state.deadlines.arm(changes, deadline_s)
        for change in added:
            log.info(
                "%s (entered at %s) must reach devices by %s",
                change.describe(),
                datetime.fromtimestamp(change.created_s, UTC).strftime("%H:%M:%SZ"),
                datetime.fromtimestamp(change.created_s + deadline_s, UTC).strftime("%H:%M:%SZ"),
            )
        return added

    def check_deadlines(self) -> bool:
        """Publish fallback for changes past their deadline (on the engine's clock); True if it did."""
        state = self.state
        if state.publisher.epoch is None:
            return False
        with self._lock:
            due = state.deadlines.due(state.ctx.clock.now())
            due = [c for c in due if not c.covered_by(state.coverage)]
            if not due:
                return False
            return self._on_deadline(due)

    def _on_deadline(self, due: list[Change]) -> bool:
        """Changes not in published envelopes by their deadline: fallback for the sites they affect.

        A derate changes a rating only, and only the sites behind it send power through it: they get
        fallback envelopes and everyone else keeps theirs. An outage, its end or a new network version
        takes load and generation off (or puts it back on) the rest of the feeder too, so every site
        gets fallback envelopes. Every change not yet published counts, due or not, so the coverage
        the fallback set records is true for all of them.
        """
        state, policy = self.state, self.policy
        ctx = state.ctx
        what = ", ".join(sorted({c.describe() for c in due}))
        try:
            now_s = ctx.now_s()
            with ctx.sessions() as session:
                inputs = read_constraints(session, now_s, state.network)
            if inputs is None:
                return False
            baseline = state.coverage
            covers = Coverage.of(inputs.fingerprint)
            fresh = [d for d in inputs.standing if baseline is None or d.id > baseline.derate_id]
            everything = (
                baseline is None
                or covers.network_id > baseline.network_id
                or covers.cleared > baseline.cleared
                or any(derate_factor(d.factor) == 0 for d in fresh)
            )
            only: set[str] | None = None
            if not everything:
                only = sites_behind(inputs.nf.network, sorted({d.asset for d in fresh}), inputs.nf.sites)
                if not only:  # nothing behind it (an unknown asset, or the derate has ended)
                    state.covered(covers)
                    return False
            plan = policy.fallback_plan(inputs)
            if plan is None:
                log.error("%s: no fallback limits to publish at the deadline", what)
                return False
            if all(c.covered_by(state.coverage) for c in due):
                return False  # a recomputation published it meanwhile
            published = policy.publish_fallback(inputs, plan, "fallback (derate deadline)", only)
            if published is None:
                return False
            set_id, n_sites, until_s = published
            before = state.status.get(inputs.feeder)
            if only is not None and before is not None and before.envelopes_until_s is not None:
                until_s = min(until_s, before.envelopes_until_s)  # the other sites keep their blocks
            late_s = now_s - min(c.created_s for c in due)
            behind = " behind it" if only is not None else ""
            state.status.set(
                inputs.feeder,
                FALLBACK,
                f"{what} not in published envelopes within {ctx.settings.derate_deadline_s:g} s",
                ctx.now_s(),
                detail=f"fallback envelopes published for {n_sites} sites{behind} (set {set_id}), "
                f"{late_s} s after it was entered",
                network_id=inputs.model.id,
                envelopes_until_s=until_s,
                fallback_sites=n_sites if only is not None else None,
            )
            policy.refresh_fallback(inputs, plan=plan)  # the defaults follow the envelopes
            return True
        except Exception:
            log.exception("fallback at the derate deadline failed")
            return False

    def prepare_fallback(self) -> None:
        """Compute the fallback limits for a change as soon as it is seen, so its deadline only publishes."""
        ctx = self.state.ctx
        try:
            with ctx.sessions() as session:
                inputs = read_constraints(session, ctx.now_s(), self.state.network)
            if inputs is not None:
                self.policy.fallback_plan(inputs)
        except Exception:
            log.exception("could not prepare the fallback limits for a new change")
