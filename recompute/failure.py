"""The failure policy and the fallback limits: what devices get when a run cannot publish good envelopes.

Envelopes are published only from good data. When a run fails, `failure_policy` (docs/fallback.md)
decides: publish fallback-valued envelopes now, or let the last good ones run out. Either way the
fallback limits (network, agreements, derates and device ratings only) are kept current as each
dynamic site's DefaultDERControl, the safety net a device falls back to when its envelopes end.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from gridshare.envelopes.resolution import resolutions_w
from gridshare.fallback.envelopes import fallback_envelope_set
from gridshare.fallback.safe_default import SafeDefault
from gridshare.recompute.deadlines import Coverage
from gridshare.recompute.fallback_plan import FallbackPlan, fallback_fingerprint, plan_fallback, plan_key
from gridshare.recompute.outcome import Outcome
from gridshare.recompute.site_limits import gross_limits, split_sites
from gridshare.recompute.snapshot import RunInputs, defaults_marker
from gridshare.recompute.state import EngineState
from gridshare.store.change_feed import wait_until_heard
from gridshare.store.db import transaction
from gridshare.store.models import EnvelopeSetRecord
from gridshare.store.publication.envelopes import current_end_s, next_created_s, publish, record_failed_run
from gridshare.store.publication.fallback_defaults import (
    safe_defaults_of,
    store_fingerprint,
    stored_fingerprint,
    write_defaults,
)
from gridshare.store.publication.status import FALLBACK, STALE, effective

log = logging.getLogger("gridshare.recompute")


class FallbackPolicy:
    def __init__(self, state: EngineState) -> None:
        self.state = state
        self._plan: tuple[tuple[object, ...], FallbackPlan] | None = None  # (plan key, plan)
        #: (digest, minima) last read back from the stored safe values (guaranteed_minimum)
        self._stored: tuple[str, dict[str, tuple[float, float]]] | None = None

    # -- the fallback limits -----------------------------------------------------------------------
    def fallback_plan(self, inputs: RunInputs) -> FallbackPlan | None:
        """Fallback limits for these constraints (kept while they stay the same); None if not computable."""
        key = plan_key(inputs, self.state.ctx.settings)
        cached = self._plan
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            plan = plan_fallback(inputs, self.state.ctx.settings)
        except Exception:
            log.exception("fallback limits could not be computed; the defaults already published stay")
            return None
        self._plan = (key, plan)
        return plan

    def refresh_fallback(
        self, inputs: RunInputs, need_plan: bool = True, plan: FallbackPlan | None = None
    ) -> FallbackPlan | None:
        """Fallback limits from the network alone, written as DefaultDERControls; None if not computable.

        Incremental: a digest of everything the published defaults depend on (network version,
        agreements, derates in force or scheduled, device ratings, settings, the registered sites,
        anyone's writes to the defaults) is kept in `server_setting` with them. While it matches, nothing
        is computed or written, whichever process or instance wrote it. `need_plan` says whether the
        caller needs the limits themselves (the failure path publishes them as envelopes); the
        successful path does not, and then an unchanged digest costs two small queries. A caller that
        has the limits already passes them as `plan`.
        """
        ctx = self.state.ctx
        settings = ctx.settings
        if plan is None:
            cached = self._plan
            plan = cached[1] if cached is not None and cached[0] == plan_key(inputs, settings) else None
        wanted = fallback_fingerprint(inputs, settings, inputs.defaults_marker)
        try:
            with ctx.sessions() as session:
                stored = stored_fingerprint(session, self.state.network)
        except Exception:
            log.exception("could not read the fallback fingerprint; recomputing the defaults")
            stored = None
        unchanged = stored == wanted
        if (unchanged or inputs.program is None) and (plan is not None or not need_plan):
            return plan  # nothing to write (no program to write it in), and nothing else is wanted
        if plan is None:
            plan = self.fallback_plan(inputs)
            if plan is None:
                return None
        if unchanged or inputs.program is None:
            return plan
        try:
            with self.state.publisher.publishing, transaction(ctx.sessions) as session:
                now_s = ctx.now_s()
                changed = 0
                if self.state.publisher.fence(session):
                    changed = write_defaults(
                        session,
                        inputs.program,
                        plan.dynamic_store_sites(inputs),
                        now_s,
                        settings.pen,
                        self.state.network,
                    )
                    # Our own write moves the marker: record the digest with the marker as it now is.
                    marker = defaults_marker(
                        session, inputs.program.id, sorted(s.id for s in inputs.store_sites.values())
                    )
                    store_fingerprint(
                        session,
                        self.state.network,
                        fallback_fingerprint(inputs, settings, marker),
                        now_s,
                        network_id=inputs.model.id,
                        sites=len(plan.by_site),
                    )
            if changed:
                log.info("fallback defaults: %d rows written for feeder %s", changed, inputs.feeder)
        except Exception:
            log.exception("could not write the fallback defaults; the ones already published stay")
        return plan

    def guaranteed_minimum(self, inputs: RunInputs) -> dict[str, tuple[float, float]]:
        """Each dynamic site's fallback (export, import) W by network site id: no envelope goes below it.

        A device that loses contact drops to its default while its neighbours keep their envelopes
        (envelopes/minimum.py). The limits this process computed for these inputs, else the safe values
        stored with a digest that still matches (a restart costs a read, not a computation), else
        computed now: the refresh after publication needs them anyway and reuses them. Empty if they
        cannot be computed (logged): envelopes then go out without the guarantee rather than not at all.
        """
        settings = self.state.ctx.settings
        cached = self._plan
        if cached is None or cached[0] != plan_key(inputs, settings):
            wanted = fallback_fingerprint(inputs, settings, inputs.defaults_marker)
            try:
                with self.state.ctx.sessions() as session:
                    if stored_fingerprint(session, self.state.network) == wanted:
                        # Read once per digest: later runs on the same inputs cost the one small query.
                        if self._stored is None or self._stored[0] != wanted:
                            ids = [s.id for s in inputs.store_sites.values()]
                            stored = safe_defaults_of(session, ids)
                            self._stored = (wanted, {v.network_site_id: _pair(v) for v in stored.values()})
                        return self._stored[1]
            except Exception:
                log.exception("could not read the stored fallback limits; computing them")
        plan = self.fallback_plan(inputs)
        if plan is None:
            return {}
        return {k: _pair(v) for k, v in plan.by_site.items()}

    def held_sites(self, inputs: RunInputs) -> dict[str, SafeDefault]:
        """Dynamic sites whose own data is untrusted, with the fallback limits they are held to."""
        if not inputs.untrusted:
            return {}
        plan = self.fallback_plan(inputs)
        if plan is None:
            raise RuntimeError("untrusted site data, and no fallback limits to hold those sites to")
        return {k: plan.by_site[k] for k in inputs.untrusted if k in plan.by_site}

    # -- the failure policy ------------------------------------------------------------------------
    def fail(
        self, inputs: RunInputs | None, plan: FallbackPlan | None, reason: str, kind: str, detail: str
    ) -> Outcome:
        """Nothing from this run reaches devices; apply `failure_policy` and report the feeder's state."""
        why = f"{kind}: {detail}"
        log.warning("recomputation (%s) not published: %s", reason, why)
        self._record_failure(reason, why, inputs.model.id if inputs is not None else None)
        feeder = inputs.feeder if inputs is not None else self.state.feeder
        if feeder is None:
            return Outcome("failed", reason, detail=why)
        if inputs is not None and plan is None:
            plan = self.fallback_plan(inputs)
        try:
            return self._apply_policy(inputs, plan, reason, kind, why, feeder)
        finally:
            if inputs is not None and plan is not None:
                # the safety net is written whatever the policy, once devices have their envelopes
                self.refresh_fallback(inputs, plan=plan)

    def _apply_policy(
        self,
        inputs: RunInputs | None,
        plan: FallbackPlan | None,
        reason: str,
        kind: str,
        why: str,
        feeder: str,
    ) -> Outcome:
        ctx, status = self.state.ctx, self.state.status
        now_s = ctx.now_s()
        network_id = inputs.model.id if inputs is not None else None
        until_s: int | None
        if ctx.settings.failure_policy == "fallback" and inputs is not None and plan is not None:
            try:
                published = self.publish_fallback(inputs, plan, f"fallback ({kind})", None)
            except Exception as exc:
                log.exception("fallback envelopes could not be published either")
                why += f"; fallback envelopes could not be published either ({type(exc).__name__})"
            else:
                if published is not None:
                    set_id, n_sites, until_s = published
                    status.set(
                        feeder,
                        FALLBACK,
                        why,
                        now_s,
                        detail=f"fallback envelopes published for {n_sites} sites (set {set_id})",
                        network_id=network_id,
                        envelopes_until_s=until_s,
                    )
                    return Outcome("failed", reason, set_id, detail=why, action="fallback published")
        before = status.get(feeder)
        until_s = before.envelopes_until_s if before is not None else self._current_end_s()
        # Devices on fallback-valued envelopes stay there; on dynamic ones, those are now stale.
        state = FALLBACK if before is not None and effective(before, now_s).state == FALLBACK else STALE
        ends = datetime.fromtimestamp(until_s, UTC).isoformat() if until_s else "their end"
        status.set(
            feeder,
            state,
            why,
            now_s,
            detail=f"the published envelopes run until {ends}, then devices use their DefaultDERControl",
            network_id=network_id if network_id is not None else (before.network_id if before else None),
            envelopes_until_s=until_s,
            fallback_sites=before.fallback_sites if before is not None and state == FALLBACK else None,
        )
        return Outcome("failed", reason, detail=why, action="expiring")

    def _current_end_s(self) -> int | None:
        """End of the current set's horizon (None when nothing is published or the store is unreadable)."""
        try:
            with self.state.ctx.sessions() as session:
                return current_end_s(session, self.state.network)
        except Exception:
            return None

    def publish_fallback(
        self, inputs: RunInputs, plan: FallbackPlan, reason: str, only: set[str] | None
    ) -> tuple[int, int, int] | None:
        """Fallback-valued envelopes for every site (`only` None) or the network site ids in `only`.

        Returns (set id, sites written, end of the new blocks), or None when another instance publishes.
        """
        ctx, publisher = self.state.ctx, self.state.publisher
        settings = ctx.settings
        if inputs.program is None:
            raise RuntimeError("no DER program to publish envelopes in")
        now_s = ctx.now_s()
        interval_s = settings.envelope_interval_s
        start_s = now_s - now_s % interval_s
        chosen = [s for s in plan.live_sites if only is None or s.id in only]
        envelopes = fallback_envelope_set(
            chosen, plan.by_site, start_s, settings.envelope_horizon_s, interval_s, plan.network.timezone
        )
        sites, cut_off = split_sites(inputs, plan.isolated_nodes, only)
        log.debug("%s: publishing fallback envelopes", reason)
        with self.state.publisher.publishing, transaction(ctx.sessions) as session:
            if not publisher.fence(session):
                log.info("fallback envelopes not published: another instance is the publisher")
                return None
            record = EnvelopeSetRecord(
                network_id=inputs.model.id,
                created_s=next_created_s(session, now_s),
                start_s=start_s,
                interval_s=interval_s,
                n_intervals=envelopes.n_intervals,
                program_id=inputs.program.id,
                policy=settings.allocation_policy,
                reason=reason[:64],
                status="published",
                detail={"fallback": True},
            )
            session.add(record)
            session.flush()
            summary = publish(
                session,
                envelopes,
                sites,
                record,
                now_s,
                resolutions_w(
                    inputs.nf.sites, settings.envelope_resolution_w, settings.envelope_resolution_pct
                ),
                cut_off,
                latest_end_s=self.state.latest_end_s(now_s),
                carry_others=only is not None,
                gross=gross_limits(inputs, plan),
                history_days=settings.limit_history_days,
                network=self.state.network,
            )
            record.detail = {
                "fallback": True,
                "sites_published": summary.sites,
                "blocks": summary.blocks,
                "covers": Coverage.of(inputs.fingerprint).as_json(),
                "epoch": publisher.epoch,
            }
            if only is not None:  # the other sites keep their dynamic blocks
                record.detail["fallback_site_ids"] = sorted(s.id for s in [*sites.values(), *cut_off])
        wait_until_heard(ctx.engine)
        self.state.covered(Coverage.of(inputs.fingerprint))
        log.warning("fallback envelopes published (%s): set %d, %d sites", reason, record.id, summary.sites)
        return record.id, summary.sites, start_s + envelopes.n_intervals * interval_s

    def _record_failure(self, reason: str, detail: str, network_id: int | None = None) -> None:
        ctx = self.state.ctx
        try:
            with transaction(ctx.sessions) as session:
                record_failed_run(
                    session,
                    network_id=network_id,
                    created_s=ctx.now_s(),
                    interval_s=ctx.settings.envelope_interval_s,
                    policy=ctx.settings.allocation_policy,
                    reason=reason,
                    detail=detail,
                )
        except Exception:
            log.exception("could not record the failed recomputation")


def _pair(safe: SafeDefault) -> tuple[float, float]:
    return safe.export_limit_w, safe.import_limit_w
