"""One recomputation: read the constraints and measurements, compute envelopes, publish them atomically.

Envelopes are published only from good data: stale telemetry or forecasts, an engine exception, an
overrun of `recompute_budget_s`, a constraint changed during the computation or a failed database
write never reach devices; each goes to the failure policy (recompute/failure.py) instead. The
constraints are read apart from the measurements, so a failure reading telemetry still leaves the
fallback limits computable; a site whose own readings cannot be trusted gets its fallback limits as
its envelope while the rest of the feeder stays dynamic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gridshare.compute.cluster import ComputeCluster
from gridshare.compute.outcome import Computed
from gridshare.compute.task import Derate, NetworkTask
from gridshare.core.settings import Settings
from gridshare.envelopes.compute import compute_envelopes
from gridshare.envelopes.forecast import Forecast, telemetry_over_profiles
from gridshare.envelopes.planned_derates import PlannedEnvelopes, compute_planned
from gridshare.envelopes.resolution import resolutions_w
from gridshare.fallback.hold import hold_at_fallback
from gridshare.fallback.safe_default import SafeDefault
from gridshare.grid.netfile import NetworkFile
from gridshare.recompute.budget import BudgetExceeded, BudgetRunner
from gridshare.recompute.deadlines import Coverage
from gridshare.recompute.failure import FallbackPolicy
from gridshare.recompute.fallback_plan import FallbackPlan
from gridshare.recompute.health import stale_forecast, stale_telemetry
from gridshare.recompute.inputs import inputs_fingerprint
from gridshare.recompute.outcome import Outcome
from gridshare.recompute.site_limits import gross_limits, split_sites
from gridshare.recompute.snapshot import RunInputs, read_constraints, read_measurements
from gridshare.recompute.state import EngineState
from gridshare.store.change_feed import wait_until_heard
from gridshare.store.db import transaction
from gridshare.store.envelope_blocks import GrossLimits
from gridshare.store.models import EnvelopeSetRecord
from gridshare.store.publication.envelopes import CUT_OFF_GROSS, next_created_s, publish
from gridshare.store.publication.status import DYNAMIC

log = logging.getLogger("gridshare.recompute")

#: An external forecast (e.g. weather-driven) for the run's horizon: (inputs, start, interval_s, n_intervals).
ForecastSource = Callable[[RunInputs, datetime, int, int], Forecast | None]


def uses_cluster(settings: Settings) -> bool:
    """Whether networks are computed on Dask: a scheduler is named, or local worker processes asked for."""
    return settings.compute_scheduler_address is not None or settings.compute_local_workers > 1


class ClusterComputeFailed(RuntimeError):
    """The network's task came back failed from the Dask cluster (timeout, worker lost, engine error)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def _constraints(fingerprint: tuple[object, ...]) -> tuple[object, ...]:
    """The part of the fingerprint envelopes depend on: network version, derates and the operator's
    agreements (not a request, not a device rating)."""
    return (*fingerprint[:3], *fingerprint[5:])


class EnvelopeRun:
    def __init__(
        self,
        state: EngineState,
        policy: FallbackPolicy,
        budget: BudgetRunner,
        forecast_source: ForecastSource | None,
        cluster: Callable[[], ComputeCluster],
    ) -> None:
        self.state = state
        self.policy = policy
        self.budget = budget
        self.forecast_source = forecast_source
        #: the compute cluster every network's run shares, connected on first use (recompute/scheduler.py)
        self._cluster = cluster

    def attempt(self, reason: str) -> Outcome:
        """Read, compute, publish; the caller holds the publisher lock and the run lock."""
        ctx, policy = self.state.ctx, self.policy
        inputs: RunInputs | None = None
        try:
            now_s = ctx.now_s()
            with ctx.sessions() as session:
                inputs = read_constraints(session, now_s, self.state.network)
                self.state.inputs_seen = (
                    inputs.fingerprint
                    if inputs is not None
                    else inputs_fingerprint(session, self.state.network)
                )
        except Exception as exc:
            log.exception("recomputation (%s) could not read the network and derates", reason)
            return policy.fail(None, None, reason, "database", f"{type(exc).__name__}: {exc}")
        if inputs is None:
            log.info("recomputation (%s) of %s skipped: no such network loaded", reason, self.state.network)
            return Outcome("skipped", reason, detail=f"network {self.state.network} is not loaded")
        self.state.feeder = inputs.feeder
        try:
            with ctx.sessions() as session:
                inputs = read_measurements(session, inputs, ctx.settings)
        except Exception as exc:  # what devices sent must never stop the fallback limits
            log.exception("recomputation (%s) could not read telemetry", reason)
            detail = f"telemetry could not be read: {type(exc).__name__}: {exc}"
            return policy.fail(inputs, None, reason, "bad input", detail)
        try:
            # Envelopes first: devices get them as soon as they are published. The engine needs the
            # fallback limits as each site's minimum (computed, or read back while unchanged); the
            # defaults are written after, from the same limits.
            outcome = self._run(inputs, None, reason)
            if outcome.status == "published":
                policy.refresh_fallback(inputs, need_plan=False)
            return outcome
        except Exception as exc:  # the engine must never take the server down with it
            log.exception("recomputation (%s) failed: %s", reason, exc)
            return policy.fail(inputs, None, reason, "error", f"{type(exc).__name__}: {exc}")

    def _run(self, inputs: RunInputs, plan: FallbackPlan | None, reason: str) -> Outcome:
        settings = self.state.ctx.settings
        fail = self.policy.fail
        now_s = inputs.now_s
        stale = stale_telemetry(now_s, inputs.newest_telemetry_s, settings.telemetry_max_age_s)
        if stale is not None:
            return fail(inputs, plan, reason, stale.kind, stale.detail)
        # The horizon starts with the interval now running, so a change reaches devices at once.
        start = datetime.fromtimestamp(now_s - now_s % settings.envelope_interval_s, UTC)
        t0 = time.perf_counter()
        try:
            forecasts = self._forecast(inputs, start)
        except Exception as exc:
            log.exception("forecast for recomputation (%s) failed", reason)
            return fail(inputs, plan, reason, "engine error", f"{type(exc).__name__}: {exc}")
        issued = forecasts.issued_at.timestamp() if forecasts is not None else None
        stale = stale_forecast(now_s, issued, settings.forecast_max_age_s)
        if stale is not None:
            return fail(inputs, plan, reason, stale.kind, stale.detail)
        try:
            held = self.policy.held_sites(inputs)
        except Exception as exc:
            log.exception("sites with untrusted data could not be held to fallback limits (%s)", reason)
            return fail(inputs, plan, reason, "bad input", f"{type(exc).__name__}: {exc}")
        nf = hold_at_fallback(inputs.nf, held)
        minimum_w = self.policy.guaranteed_minimum(inputs)  # no envelope below a site's fallback
        try:
            planned = self._compute(nf, inputs, start, forecasts, minimum_w)
        except BudgetExceeded as exc:
            return fail(inputs, plan, reason, "overrun", str(exc))
        except ClusterComputeFailed as exc:
            log.error("envelope computation on the cluster failed (%s): %s", reason, exc)
            kind = "overrun" if exc.kind == "timeout" else "engine error"
            return fail(inputs, plan, reason, kind, f"compute cluster: {exc}")
        except Exception as exc:
            log.exception("envelope engine failed (%s)", reason)
            return fail(inputs, plan, reason, "engine error", f"{type(exc).__name__}: {exc}")
        compute_s = time.perf_counter() - t0
        try:
            return self._publish(inputs, planned, start, reason, compute_s, held)
        except Exception as exc:
            log.exception("publication (%s) failed; nothing of it was published", reason)
            return fail(inputs, plan, reason, "database", f"publication failed: {type(exc).__name__}: {exc}")

    def _compute(
        self,
        nf: NetworkFile,
        inputs: RunInputs,
        start: datetime,
        forecasts: Forecast | None,
        minimum_w: dict[str, tuple[float, float]],
    ) -> PlannedEnvelopes:
        """The envelopes of one network: in this process, or as a task on the Dask cluster that
        `compute_scheduler_address` names (docs/utility-scale.md). Either way the result is whole or
        an exception; publication stays here, with the single publisher."""
        settings = self.state.ctx.settings
        margin = settings.forecast_margin_fraction if settings.forecast_aware_envelopes else None
        if not uses_cluster(settings):
            return self.budget.run(
                lambda: compute_planned(
                    nf,
                    inputs.standing,
                    start,
                    settings.envelope_horizon_s,
                    settings.envelope_interval_s,
                    settings.allocation_policy,
                    forecasts,
                    engine=compute_envelopes,
                    forecast_margin_fraction=margin,
                    minimum_w=minimum_w,
                ),
                settings.recompute_budget_s,
            )
        task = NetworkTask(
            network=nf.network.name,
            nf=nf,
            now_s=inputs.now_s,
            start_s=int(start.timestamp()),
            horizon_s=settings.envelope_horizon_s,
            interval_s=settings.envelope_interval_s,
            policy=settings.allocation_policy,
            derates=tuple(Derate.of(d) for d in inputs.standing),
            forecast=forecasts,
            forecast_margin_fraction=margin,
            minimum_w=minimum_w,
            inputs_key=inputs.fingerprint,
            timeout_s=settings.recompute_budget_s,
        )
        (outcome,) = self._cluster().compute([task])
        if isinstance(outcome, Computed):
            return outcome.result.planned
        raise ClusterComputeFailed(outcome.kind, outcome.detail)

    def _forecast(self, inputs: RunInputs, start: datetime) -> Forecast | None:
        """An external forecast if a source is configured, else recent telemetry over profiles (or None)."""
        settings = self.state.ctx.settings
        n = settings.envelope_horizon_s // settings.envelope_interval_s
        if self.forecast_source is not None:
            return self.forecast_source(inputs, start, settings.envelope_interval_s, n)
        by_id = {inputs.nmi_to_site_id[nmi]: t for nmi, t in inputs.telemetry.items()}
        return telemetry_over_profiles(
            inputs.derated.network,
            inputs.nf.sites,
            by_id,
            inputs.derated.isolated_nodes,
            start,
            settings.envelope_interval_s,
            n,
            issued_at=datetime.fromtimestamp(inputs.now_s, UTC),
        )

    def _publish(
        self,
        inputs: RunInputs,
        planned: PlannedEnvelopes,
        start: datetime,
        reason: str,
        compute_s: float,
        held: dict[str, SafeDefault],
    ) -> Outcome:
        ctx, publisher = self.state.ctx, self.state.publisher
        settings = ctx.settings
        envelopes = planned.envelopes
        now_s = inputs.now_s
        t1 = time.perf_counter()
        log.debug("recomputation (%s): publishing", reason)
        with publisher.publishing, transaction(ctx.sessions) as session:
            if not publisher.fence(session):
                log.info("recomputation (%s) not published: another instance is the publisher", reason)
                return Outcome("skipped", reason, detail="another instance is the publisher")
            if _constraints(inputs_fingerprint(session, self.state.network)) != _constraints(
                inputs.fingerprint
            ):
                log.info("recomputation (%s) not published: a constraint changed while it ran", reason)
                return Outcome("skipped", reason, detail="a constraint changed during the computation")
            record = EnvelopeSetRecord(
                network_id=inputs.model.id,
                created_s=next_created_s(session, now_s),
                start_s=int(start.timestamp()),
                interval_s=settings.envelope_interval_s,
                n_intervals=envelopes.n_intervals,
                program_id=inputs.program.id if inputs.program is not None else None,
                policy=settings.allocation_policy,
                reason=reason[:64],
                status="published",
                detail={},
            )
            session.add(record)
            session.flush()
            # Cut off for the whole horizon: no column, zero both ways. Cut off now but not throughout
            # (an outage ending within the horizon): zero where it applies, and zero gross limits.
            sites, cut_off = split_sites(inputs, planned.isolated_throughout)
            gross = gross_limits(inputs)
            for site_id, safe in held.items():  # held to their fallback: the default's own gross limits
                gross[site_id] = GrossLimits(safe.generation_limit_w, safe.load_limit_w)
            for s in inputs.nf.sites:
                if s.node in planned.isolated_now:
                    gross[s.id] = CUT_OFF_GROSS
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
                gross=gross,
                series=planned.series,
                history_days=settings.limit_history_days,
                network=self.state.network,
            )
            publish_s = time.perf_counter() - t1
            binding = planned.binding
            record.detail = {
                "sites_published": summary.sites,
                "blocks": summary.blocks,
                "blocks_new": summary.blocks_new,
                "binding": binding,
                "infeasible": len(envelopes.infeasibilities),
                "raised_to_fallback": sum(envelopes.minimum_raised.values()),
                "fallback_not_carried": len(envelopes.minimum_not_carried),
                "compute_s": round(compute_s, 3),
                "publish_s": round(publish_s, 3),
                "telemetry_sites": len(inputs.telemetry),
                "covers": Coverage.of(inputs.fingerprint).as_json(),
                "epoch": publisher.epoch,
            }
            if held:
                record.detail["held_at_fallback"] = {k: inputs.untrusted[k] for k in held}
        if envelopes.minimum_not_carried:
            first_direction, first_at = envelopes.minimum_not_carried[0]
            log.warning(
                "recomputation (%s): %d interval(s) cannot carry every site's fallback limit (first: %s "
                "from %s); the forecast is worse than the fallback's worst case, so a device on its "
                "default there may overload the network: check the worst-case settings",
                reason,
                len(envelopes.minimum_not_carried),
                first_direction,
                first_at.isoformat(),
            )
        wait_until_heard(ctx.engine)  # this process's device caches know of the set before we report it
        self.state.covered(Coverage.of(inputs.fingerprint))
        until_s = int(start.timestamp()) + envelopes.n_intervals * envelopes.interval_s
        self._report_published(inputs, record.id, reason, until_s, held)
        log.info(
            "envelopes published (%s): set %d, %d intervals from %s, %d of %d sites, %d blocks (%d new), "
            "binding export/import %d/%d, %d infeasible, compute %.2fs publish %.2fs",
            reason,
            record.id,
            envelopes.n_intervals,
            start.isoformat(),
            summary.sites,
            len(inputs.nf.sites),
            summary.blocks,
            summary.blocks_new,
            binding["export"],
            binding["import"],
            len(envelopes.infeasibilities),
            compute_s,
            publish_s,
        )
        return Outcome("published", reason, record.id, summary, compute_s=compute_s, publish_s=publish_s)

    def _report_published(
        self, inputs: RunInputs, set_id: int, reason: str, until_s: int, held: dict[str, SafeDefault]
    ) -> None:
        """The feeder is dynamic again (some sites possibly held at their fallback limits)."""
        ctx = self.state.ctx
        if held:
            why = "; ".join(f"{k}: {inputs.untrusted[k]}" for k in sorted(held))
            self.state.status.set(
                inputs.feeder,
                DYNAMIC,
                f"envelopes computed from fresh data; {len(held)} site(s) held at fallback limits "
                f"(untrusted data: {why})",
                ctx.now_s(),
                detail=f"set {set_id} published ({reason})",
                network_id=inputs.model.id,
                envelopes_until_s=until_s,
                fallback_sites=len(held),
                site_fallbacks={k: inputs.untrusted[k] for k in sorted(held)},
            )
        else:
            self.state.status.set(
                inputs.feeder,
                DYNAMIC,
                "envelopes computed from fresh data",
                ctx.now_s(),
                detail=f"set {set_id} published ({reason})",
                network_id=inputs.model.id,
                envelopes_until_s=until_s,
            )
