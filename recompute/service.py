"""The recomputation loop: read inputs, compute envelopes, publish atomically; on a schedule and on demand.

APScheduler runs `run_once` every `recompute_interval_s` on a rolling horizon, and the watcher runs one
as soon as an operator changes a constraint. Runs never overlap in one process, and only the holder of
the publisher lock (store/publication/lease.py) computes or publishes: a standby instance tries for the
lock every `publisher_poll_s` and takes over within about that long of the publisher's death, and
every publication is fenced, so two instances never publish at once.

Once its envelopes are out, a run refreshes the fallback limits (network, agreements, derates and
device ratings only) and publishes them as each dynamic site's DefaultDERControl, if those inputs
changed. Envelopes are published only from good data: stale telemetry or forecasts, an engine
exception, an overrun of `recompute_budget_s`, a constraint changed during the computation or a
failed database write never reach devices. What happens instead is the `failure_policy`
(docs/fallback.md): publish fallback-valued envelopes now, or let the last good ones run out. The
constraints are read apart from the measurements, so a failure reading telemetry still leaves the
fallback limits computable; a site whose own readings cannot be trusted gets its fallback limits as
its envelope while the rest of the feeder stays dynamic.

A derate or outage that is not in published envelopes within `derate_deadline_s` of being entered gets
fallback envelopes for the sites behind it at once (recompute/deadlines.py): checked on the engine's
clock by a ticker that no running computation blocks, and recovered from the store after a restart.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.core.runtime import Runtime
from gridshare.core.settings import Settings
from gridshare.envelopes.compute import compute_envelopes
from gridshare.envelopes.forecast import Forecast, ProfileSpec, persistence_forecast, profile_forecast
from gridshare.envelopes.planned_derates import PlannedEnvelopes, compute_planned
from gridshare.fallback.envelopes import fallback_envelope_set
from gridshare.fallback.ramp import site_rating_w
from gridshare.grid.agreements import Limited
from gridshare.grid.derates import derate_factor
from gridshare.grid.netfile import NetworkFile
from gridshare.grid.network import Site as NetworkSite
from gridshare.recompute.budget import BudgetExceeded, BudgetRunner
from gridshare.recompute.deadlines import (
    Change,
    Coverage,
    DeadlineBook,
    newest_marks,
    published_coverage,
    uncovered_changes,
)
from gridshare.recompute.fallback_plan import (
    FallbackPlan,
    SafeDefault,
    fallback_fingerprint,
    plan_fallback,
    plan_key,
    sites_behind,
)
from gridshare.recompute.health import stale_forecast, stale_telemetry
from gridshare.recompute.inputs import inputs_fingerprint
from gridshare.recompute.snapshot import RunInputs, defaults_marker, read_constraints, read_measurements
from gridshare.store.db import transaction
from gridshare.store.envelope_blocks import GrossLimits
from gridshare.store.models import EnvelopePointer, EnvelopeSetRecord, Site
from gridshare.store.publication.envelopes import CUT_OFF_GROSS, PublishSummary, current_set_id, publish
from gridshare.store.publication.fallback_defaults import (
    store_fingerprint,
    stored_fingerprint,
    write_defaults,
)
from gridshare.store.publication.lease import Publisher, holder_name
from gridshare.store.publication.status import DYNAMIC, FALLBACK, STALE, StatusBoard, effective

log = logging.getLogger("gridshare.recompute")

#: An external forecast (e.g. weather-driven) for the run's horizon: (inputs, start, interval_s, n_intervals).
ForecastSource = Callable[[RunInputs, datetime, int, int], Forecast | None]


@dataclass(frozen=True)
class Outcome:
    status: str  # published | skipped | failed
    reason: str
    envelope_set_id: int | None = None
    summary: PublishSummary | None = None
    detail: str = ""
    compute_s: float = 0.0
    publish_s: float = 0.0
    action: str = ""  # what the failure policy did: "fallback published" | "expiring"


def _resolutions(sites: Sequence[NetworkSite], settings: Settings) -> dict[str, float]:
    """Rounding step per site: the configured watts, or a share of the site's size if that is larger.

    A 2.7 MW solar farm whose limit moves by a few hundred watts each interval would otherwise get a
    new control every five minutes; 1 % of its size keeps the list short and the limit conservative.
    """
    return {
        s.id: max(
            settings.envelope_resolution_w,
            settings.envelope_resolution_pct / 100 * 1000 * max(s.max_export_kw, s.max_import_kw),
        )
        for s in sites
    }


def _gross_limits(inputs: RunInputs, plan: FallbackPlan | None = None) -> dict[str, GrossLimits]:
    """Gross limits (opModGenLimW, opModLoadLimW) for every envelope block, by network site id.

    Dynamic envelopes carry each site's unconstrained level, P_j (the larger of its agreed maxima and
    its devices' reported ratings, as the ramp uses): a device that takes every mode an event leaves
    unset from its DefaultDERControl (CSIP-AUS devices and our simulator do) would otherwise stay at
    the default's generation limit, the fallback export, under a generous envelope. Fallback-valued
    envelopes (`plan` given) stand in for the default, so dynamic sites carry the default's own gross
    limits there.
    """
    out = {}
    for s in inputs.nf.sites:
        p_w = float(math.floor(site_rating_w(s, inputs.rated_w)))
        out[s.id] = GrossLimits(p_w, p_w)
    if plan is not None:
        for site_id, safe in plan.by_site.items():
            out[site_id] = GrossLimits(safe.generation_limit_w, safe.load_limit_w)
    return out


def _split_sites(
    inputs: RunInputs, isolated: frozenset[str], only: set[str] | None = None
) -> tuple[dict[str, Site], list[Site]]:
    """Registered sites (matched to the network by NMI, optionally only some network site ids) split into
    those that get envelopes, keyed by network site id, and those cut off by an outage."""
    by_nmi = {s.nmi: s for s in inputs.nf.sites if s.nmi}
    wanted = {nmi: site for nmi, site in inputs.store_sites.items() if only is None or by_nmi[nmi].id in only}
    live = {by_nmi[nmi].id: site for nmi, site in wanted.items() if by_nmi[nmi].node not in isolated}
    cut_off = [site for nmi, site in wanted.items() if by_nmi[nmi].node in isolated]
    return live, cut_off


def _created_s(session: Session, now_s: int) -> int:
    """Strictly newer than the set it replaces, so its blocks win every supersession tie."""
    previous = session.get(EnvelopeSetRecord, current_set_id(session) or 0)
    return max(now_s, previous.created_s + 1) if previous is not None else now_s


def _constraints(fingerprint: tuple[object, ...]) -> tuple[object, ...]:
    """The part of the fingerprint envelopes depend on: network version and derates (not a request)."""
    return fingerprint[:3]


def _hold_at_fallback(nf: NetworkFile, held: dict[str, SafeDefault]) -> NetworkFile:
    """The network file with the `held` sites turned into fixed flows at their fallback limits.

    The engine then computes everyone else's envelopes around those sites exporting or importing up
    to their fallback limits (which is what they may do), and gives them exactly those limits.
    """
    if not held:
        return nf
    sites = tuple(
        replace(
            s,
            agreement=Limited(
                export_kw=held[s.id].export_limit_w / 1000.0, import_kw=held[s.id].import_limit_w / 1000.0
            ),
        )
        if s.id in held
        else s
        for s in nf.sites
    )
    return replace(nf, sites=sites)


#: Wall seconds between two looks at the deadlines (they themselves are on the engine's clock).
TICK_S = 0.2


class Recomputer:
    def __init__(
        self, ctx: Runtime, holder: str | None = None, forecast_source: ForecastSource | None = None
    ) -> None:
        self.ctx = ctx
        self.holder = holder or holder_name()
        self.forecast_source = forecast_source
        self.status = StatusBoard(ctx.sessions)
        self.publisher = Publisher(ctx.engine, ctx.sessions, self.holder, ctx.now_s)
        self._run_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._inputs_seen: tuple[object, ...] | None = None
        self._budget = BudgetRunner()
        self._deadlines = DeadlineBook()
        self._coverage: Coverage | None = None  # what the current published set covers
        self._feeder: str | None = None
        self._plan: tuple[tuple[object, ...], FallbackPlan] | None = None  # (plan key, plan)
        self._next_discovery = 0.0  # monotonic: when the ticker next looks for unpublished changes
        self._deadline_lock = threading.Lock()

    # -- the right to publish ----------------------------------------------------------------------
    def ensure_publisher(self) -> bool:
        """Hold the publisher lock, taking it if it is free; on taking it, pick up what is pending."""
        was = self.publisher.epoch
        if not self.publisher.ensure():
            return False
        if self.publisher.epoch != was:
            self._took_over()
        return True

    def _took_over(self) -> None:
        """A new epoch: forget what this instance knew, and learn from the store what is unpublished."""
        self._deadlines.clear()
        self._coverage = None
        try:
            with self.ctx.sessions() as session:
                self._coverage = published_coverage(session)
        except Exception:
            log.exception("could not read what the published envelopes cover; every change counts as pending")
        self.discover()

    def _covered(self, coverage: Coverage) -> None:
        """A set covering `coverage` is published: the changes it covers need no deadline any more."""
        self._coverage = coverage.union(self._coverage)
        self._deadlines.forget_covered(self._coverage)

    # -- one run -----------------------------------------------------------------------------------
    def run_once(self, reason: str = "scheduled") -> Outcome:
        with self._run_lock:
            return self._attempt(reason)

    def _attempt(self, reason: str) -> Outcome:
        if not self.ensure_publisher():
            log.debug("recomputation (%s) not run: another instance is the publisher", reason)
            return Outcome("skipped", reason, detail="another instance is the publisher")
        log.debug("recomputation (%s) started", reason)
        # A change already past its deadline (a publisher that just took over from a dead one) gets its
        # fallback first: a full recomputation would compete with it for the processor.
        self.check_deadlines()
        inputs: RunInputs | None = None
        try:
            now_s = self.ctx.now_s()
            with self.ctx.sessions() as session:
                inputs = read_constraints(session, now_s)
                self._inputs_seen = inputs.fingerprint if inputs is not None else inputs_fingerprint(session)
        except Exception as exc:
            log.exception("recomputation (%s) could not read the network and derates", reason)
            return self._fail(None, None, reason, "database", f"{type(exc).__name__}: {exc}")
        if inputs is None:
            log.info("recomputation (%s) skipped: no network loaded", reason)
            return Outcome("skipped", reason, detail="no network loaded")
        self._feeder = inputs.feeder
        try:
            with self.ctx.sessions() as session:
                inputs = read_measurements(session, inputs, self.ctx.settings)
        except Exception as exc:  # what devices sent must never stop the fallback limits
            log.exception("recomputation (%s) could not read telemetry", reason)
            detail = f"telemetry could not be read: {type(exc).__name__}: {exc}"
            return self._fail(inputs, None, reason, "bad input", detail)
        try:
            # Envelopes first: devices get them as soon as they are computed. The fallback limits
            # follow (computed lazily on the failure path, where they are needed at once).
            outcome = self._run(inputs, None, reason)
            if outcome.status == "published":
                self._refresh_fallback(inputs, need_plan=False)
            return outcome
        except Exception as exc:  # the engine must never take the server down with it
            log.exception("recomputation (%s) failed: %s", reason, exc)
            return self._fail(inputs, None, reason, "error", f"{type(exc).__name__}: {exc}")

    def _fallback_plan(self, inputs: RunInputs) -> FallbackPlan | None:
        """Fallback limits for these constraints (kept while they stay the same); None if not computable."""
        key = plan_key(inputs, self.ctx.settings)
        cached = self._plan
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            plan = plan_fallback(inputs, self.ctx.settings)
        except Exception:
            log.exception("fallback limits could not be computed; the defaults already published stay")
            return None
        self._plan = (key, plan)
        return plan

    def _refresh_fallback(
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
        settings = self.ctx.settings
        if plan is None:
            cached = self._plan
            plan = cached[1] if cached is not None and cached[0] == plan_key(inputs, settings) else None
        wanted = fallback_fingerprint(inputs, settings, inputs.defaults_marker)
        try:
            with self.ctx.sessions() as session:
                stored = stored_fingerprint(session)
        except Exception:
            log.exception("could not read the fallback fingerprint; recomputing the defaults")
            stored = None
        unchanged = stored == wanted
        if (unchanged or inputs.program is None) and (plan is not None or not need_plan):
            return plan  # nothing to write (no program to write it in), and nothing else is wanted
        if plan is None:
            plan = self._fallback_plan(inputs)
            if plan is None:
                return None
        if unchanged or inputs.program is None:
            return plan
        try:
            with transaction(self.ctx.sessions) as session:
                now_s = self.ctx.now_s()
                changed = 0
                if self.publisher.fence(session):
                    changed = write_defaults(
                        session, inputs.program, plan.dynamic_store_sites(inputs), now_s, settings.pen
                    )
                    # Our own write moves the marker: record the digest with the marker as it now is.
                    marker = defaults_marker(session, inputs.program.id)
                    store_fingerprint(
                        session,
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

    def _held_sites(self, inputs: RunInputs) -> dict[str, SafeDefault]:
        """Dynamic sites whose own data is untrusted, with the fallback limits they are held to."""
        if not inputs.untrusted:
            return {}
        plan = self._fallback_plan(inputs)
        if plan is None:
            raise RuntimeError("untrusted site data, and no fallback limits to hold those sites to")
        return {k: plan.by_site[k] for k in inputs.untrusted if k in plan.by_site}

    def _run(self, inputs: RunInputs, plan: FallbackPlan | None, reason: str) -> Outcome:
        settings = self.ctx.settings
        now_s = inputs.now_s
        stale = stale_telemetry(now_s, inputs.newest_telemetry_s, settings.telemetry_max_age_s)
        if stale is not None:
            return self._fail(inputs, plan, reason, stale.kind, stale.detail)
        # The horizon starts with the interval now running, so a change reaches devices at once.
        start = datetime.fromtimestamp(now_s - now_s % settings.envelope_interval_s, UTC)
        t0 = time.perf_counter()
        try:
            forecasts = self._forecast(inputs, start)
        except Exception as exc:
            log.exception("forecast for recomputation (%s) failed", reason)
            return self._fail(inputs, plan, reason, "engine error", f"{type(exc).__name__}: {exc}")
        issued = forecasts.issued_at.timestamp() if forecasts is not None else None
        stale = stale_forecast(now_s, issued, settings.forecast_max_age_s)
        if stale is not None:
            return self._fail(inputs, plan, reason, stale.kind, stale.detail)
        try:
            held = self._held_sites(inputs)
        except Exception as exc:
            log.exception("sites with untrusted data could not be held to fallback limits (%s)", reason)
            return self._fail(inputs, plan, reason, "bad input", f"{type(exc).__name__}: {exc}")
        nf = _hold_at_fallback(inputs.nf, held)
        try:
            planned = self._budget.run(
                lambda: compute_planned(
                    nf,
                    inputs.standing,
                    start,
                    settings.envelope_horizon_s,
                    settings.envelope_interval_s,
                    settings.allocation_policy,
                    forecasts,
                    engine=compute_envelopes,
                    forecast_margin_fraction=(
                        settings.forecast_margin_fraction if settings.forecast_aware_envelopes else None
                    ),
                ),
                settings.recompute_budget_s,
            )
        except BudgetExceeded as exc:
            return self._fail(inputs, plan, reason, "overrun", str(exc))
        except Exception as exc:
            log.exception("envelope engine failed (%s)", reason)
            return self._fail(inputs, plan, reason, "engine error", f"{type(exc).__name__}: {exc}")
        compute_s = time.perf_counter() - t0
        try:
            return self._publish(inputs, planned, start, reason, compute_s, held)
        except Exception as exc:
            log.exception("publication (%s) failed; nothing of it was published", reason)
            return self._fail(
                inputs, plan, reason, "database", f"publication failed: {type(exc).__name__}: {exc}"
            )

    def _forecast(self, inputs: RunInputs, start: datetime) -> Forecast | None:
        """An external forecast if a source is configured, else recent telemetry over profiles (or None)."""
        settings = self.ctx.settings
        n = settings.envelope_horizon_s // settings.envelope_interval_s
        if self.forecast_source is not None:
            return self.forecast_source(inputs, start, settings.envelope_interval_s, n)
        if not inputs.telemetry:
            return None
        network = inputs.derated.network
        isolated = inputs.derated.isolated_nodes
        by_id = {inputs.nmi_to_site_id[nmi]: t for nmi, t in inputs.telemetry.items()}
        specs = {
            s.id: ProfileSpec(s.pv_kw, s.load_kw, s.load_profile)
            for s in inputs.nf.sites
            if s.id in by_id and s.node not in isolated
        }
        base = profile_forecast(
            specs,
            start,
            settings.envelope_interval_s,
            n,
            tz=network.timezone,
            latitude_deg=network.latitude_deg,
            longitude_deg=network.longitude_deg,
            issued_at=datetime.fromtimestamp(inputs.now_s, UTC),
        )
        return persistence_forecast(base, {k: v for k, v in by_id.items() if k in specs})

    def _publish(
        self,
        inputs: RunInputs,
        planned: PlannedEnvelopes,
        start: datetime,
        reason: str,
        compute_s: float,
        held: dict[str, SafeDefault],
    ) -> Outcome:
        settings = self.ctx.settings
        envelopes = planned.envelopes
        now_s = inputs.now_s
        t1 = time.perf_counter()
        log.debug("recomputation (%s): publishing", reason)
        with transaction(self.ctx.sessions) as session:
            if not self.publisher.fence(session):
                log.info("recomputation (%s) not published: another instance is the publisher", reason)
                return Outcome("skipped", reason, detail="another instance is the publisher")
            if _constraints(inputs_fingerprint(session)) != _constraints(inputs.fingerprint):
                log.info("recomputation (%s) not published: a constraint changed while it ran", reason)
                return Outcome("skipped", reason, detail="a constraint changed during the computation")
            record = EnvelopeSetRecord(
                network_id=inputs.model.id,
                created_s=_created_s(session, now_s),
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
            sites, cut_off = _split_sites(inputs, planned.isolated_throughout)
            gross = _gross_limits(inputs)
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
                _resolutions(inputs.nf.sites, settings),
                cut_off,
                latest_end_s=self._latest_end_s(now_s),
                gross=gross,
                series=planned.series,
                history_days=settings.limit_history_days,
            )
            publish_s = time.perf_counter() - t1
            binding = planned.binding
            record.detail = {
                "sites_published": summary.sites,
                "blocks": summary.blocks,
                "blocks_new": summary.blocks_new,
                "binding": binding,
                "infeasible": len(envelopes.infeasibilities),
                "compute_s": round(compute_s, 3),
                "publish_s": round(publish_s, 3),
                "telemetry_sites": len(inputs.telemetry),
                "covers": Coverage.of(inputs.fingerprint).as_json(),
                "epoch": self.publisher.epoch,
            }
            if held:
                record.detail["held_at_fallback"] = {k: inputs.untrusted[k] for k in held}
        self._covered(Coverage.of(inputs.fingerprint))
        until_s = int(start.timestamp()) + envelopes.n_intervals * envelopes.interval_s
        if held:
            why = "; ".join(f"{k}: {inputs.untrusted[k]}" for k in sorted(held))
            self.status.set(
                inputs.feeder,
                DYNAMIC,
                f"envelopes computed from fresh data; {len(held)} site(s) held at fallback limits "
                f"(untrusted data: {why})",
                self.ctx.now_s(),
                detail=f"set {record.id} published ({reason})",
                network_id=inputs.model.id,
                envelopes_until_s=until_s,
                fallback_sites=len(held),
                site_fallbacks={k: inputs.untrusted[k] for k in sorted(held)},
            )
        else:
            self.status.set(
                inputs.feeder,
                DYNAMIC,
                "envelopes computed from fresh data",
                self.ctx.now_s(),
                detail=f"set {record.id} published ({reason})",
                network_id=inputs.model.id,
                envelopes_until_s=until_s,
            )
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

    def _current_end_s(self) -> int | None:
        """End of the current set's horizon (None when nothing is published or the store is unreadable)."""
        try:
            with self.ctx.sessions() as session:
                row = session.execute(
                    select(
                        EnvelopeSetRecord.start_s, EnvelopeSetRecord.n_intervals, EnvelopeSetRecord.interval_s
                    )
                    .join(EnvelopePointer, EnvelopePointer.set_id == EnvelopeSetRecord.id)
                    .where(EnvelopePointer.id == 1)
                ).first()
        except Exception:
            return None
        return None if row is None else int(row[0] + row[1] * row[2])

    def _latest_end_s(self, now_s: int) -> int:
        """No published block may end later than one horizon (plus the running interval) from now."""
        return now_s + self.ctx.settings.envelope_horizon_s + self.ctx.settings.envelope_interval_s

    # -- the failure policy ------------------------------------------------------------------------
    def _fail(
        self, inputs: RunInputs | None, plan: FallbackPlan | None, reason: str, kind: str, detail: str
    ) -> Outcome:
        """Nothing from this run reaches devices; apply `failure_policy` and report the feeder's state."""
        why = f"{kind}: {detail}"
        log.warning("recomputation (%s) not published: %s", reason, why)
        self._record_failure(reason, why, inputs.model.id if inputs is not None else None)
        feeder = inputs.feeder if inputs is not None else self._feeder
        if feeder is None:
            return Outcome("failed", reason, detail=why)
        if inputs is not None and plan is None:
            plan = self._fallback_plan(inputs)
        try:
            return self._apply_policy(inputs, plan, reason, kind, why, feeder)
        finally:
            if inputs is not None and plan is not None:
                # the safety net is written whatever the policy, once devices have their envelopes
                self._refresh_fallback(inputs, plan=plan)

    def _apply_policy(
        self,
        inputs: RunInputs | None,
        plan: FallbackPlan | None,
        reason: str,
        kind: str,
        why: str,
        feeder: str,
    ) -> Outcome:
        settings = self.ctx.settings
        now_s = self.ctx.now_s()
        network_id = inputs.model.id if inputs is not None else None
        until_s: int | None
        if settings.failure_policy == "fallback" and inputs is not None and plan is not None:
            try:
                published = self._publish_fallback(inputs, plan, f"fallback ({kind})", None)
            except Exception as exc:
                log.exception("fallback envelopes could not be published either")
                why += f"; fallback envelopes could not be published either ({type(exc).__name__})"
            else:
                if published is not None:
                    set_id, n_sites, until_s = published
                    self.status.set(
                        feeder,
                        FALLBACK,
                        why,
                        now_s,
                        detail=f"fallback envelopes published for {n_sites} sites (set {set_id})",
                        network_id=network_id,
                        envelopes_until_s=until_s,
                    )
                    return Outcome("failed", reason, set_id, detail=why, action="fallback published")
        before = self.status.get(feeder)
        until_s = before.envelopes_until_s if before is not None else self._current_end_s()
        # Devices on fallback-valued envelopes stay there; on dynamic ones, those are now stale.
        state = FALLBACK if before is not None and effective(before, now_s).state == FALLBACK else STALE
        ends = datetime.fromtimestamp(until_s, UTC).isoformat() if until_s else "their end"
        self.status.set(
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

    def _publish_fallback(
        self, inputs: RunInputs, plan: FallbackPlan, reason: str, only: set[str] | None
    ) -> tuple[int, int, int] | None:
        """Fallback-valued envelopes for every site (`only` None) or the network site ids in `only`.

        Returns (set id, sites written, end of the new blocks), or None when another instance publishes.
        """
        settings = self.ctx.settings
        if inputs.program is None:
            raise RuntimeError("no DER program to publish envelopes in")
        now_s = self.ctx.now_s()
        interval_s = settings.envelope_interval_s
        start_s = now_s - now_s % interval_s
        chosen = [s for s in plan.live_sites if only is None or s.id in only]
        envelopes = fallback_envelope_set(
            chosen, plan.by_site, start_s, settings.envelope_horizon_s, interval_s, plan.network.timezone
        )
        sites, cut_off = _split_sites(inputs, plan.isolated_nodes, only)
        log.debug("%s: publishing fallback envelopes", reason)
        with transaction(self.ctx.sessions) as session:
            if not self.publisher.fence(session):
                log.info("fallback envelopes not published: another instance is the publisher")
                return None
            record = EnvelopeSetRecord(
                network_id=inputs.model.id,
                created_s=_created_s(session, now_s),
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
                _resolutions(inputs.nf.sites, settings),
                cut_off,
                latest_end_s=self._latest_end_s(now_s),
                carry_others=only is not None,
                gross=_gross_limits(inputs, plan),
                history_days=settings.limit_history_days,
            )
            record.detail = {
                "fallback": True,
                "sites_published": summary.sites,
                "blocks": summary.blocks,
                "covers": Coverage.of(inputs.fingerprint).as_json(),
                "epoch": self.publisher.epoch,
            }
            if only is not None:  # the other sites keep their dynamic blocks
                record.detail["fallback_site_ids"] = sorted(s.id for s in [*sites.values(), *cut_off])
        self._covered(Coverage.of(inputs.fingerprint))
        log.warning("fallback envelopes published (%s): set %d, %d sites", reason, record.id, summary.sites)
        return record.id, summary.sites, start_s + envelopes.n_intervals * interval_s

    def _record_failure(self, reason: str, detail: str, network_id: int | None = None) -> None:
        try:
            with transaction(self.ctx.sessions) as session:
                session.add(
                    EnvelopeSetRecord(
                        network_id=network_id,
                        created_s=self.ctx.now_s(),
                        start_s=0,
                        interval_s=self.ctx.settings.envelope_interval_s,
                        n_intervals=0,
                        policy=self.ctx.settings.allocation_policy,
                        reason=reason[:64],
                        status="failed",
                        detail={"error": detail[:2000]},
                    )
                )
        except Exception:
            log.exception("could not record the failed recomputation")

    # -- derates: recompute at once, fallback by a deadline ------------------------------------------
    def discover(self) -> list[Change]:
        """Give every change the published envelopes do not cover yet its deadline; returns new ones.

        Cheap while nothing changed (two index lookups); only the publisher keeps deadlines.
        """
        if self.publisher.epoch is None:
            return []
        try:
            with self.ctx.sessions() as session:
                marks = newest_marks(session)
                coverage = self._coverage
                if coverage is not None and marks.union(coverage) == coverage:
                    return []
                changes = uncovered_changes(session, coverage)
        except Exception:
            log.exception("could not look for unpublished changes")
            return []
        added = self._deadlines.arm(changes, self.ctx.settings.derate_deadline_s)
        for change in added:
            log.info(
                "%s (entered at %s) must reach devices by %s",
                change.describe(),
                datetime.fromtimestamp(change.created_s, UTC).strftime("%H:%M:%SZ"),
                datetime.fromtimestamp(change.created_s + self.ctx.settings.derate_deadline_s, UTC).strftime(
                    "%H:%M:%SZ"
                ),
            )
        return added

    def check_deadlines(self) -> bool:
        """Publish fallback for changes past their deadline (on the engine's clock); True if it did."""
        if self.publisher.epoch is None:
            return False
        with self._deadline_lock:  # the ticker and a starting run may both look: one publishes
            due = self._deadlines.due(self.ctx.clock.now())
            due = [c for c in due if not c.covered_by(self._coverage)]
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
        settings = self.ctx.settings
        what = ", ".join(sorted({c.describe() for c in due}))
        try:
            now_s = self.ctx.now_s()
            with self.ctx.sessions() as session:
                inputs = read_constraints(session, now_s)
            if inputs is None:
                return False
            baseline = self._coverage
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
                    self._covered(covers)
                    return False
            plan = self._fallback_plan(inputs)
            if plan is None:
                log.error("%s: no fallback limits to publish at the deadline", what)
                return False
            if all(c.covered_by(self._coverage) for c in due):
                return False  # a recomputation published it meanwhile
            published = self._publish_fallback(inputs, plan, "fallback (derate deadline)", only)
            if published is None:
                return False
            set_id, n_sites, until_s = published
            before = self.status.get(inputs.feeder)
            if only is not None and before is not None and before.envelopes_until_s is not None:
                until_s = min(until_s, before.envelopes_until_s)  # the other sites keep their blocks
            late_s = now_s - min(c.created_s for c in due)
            behind = " behind it" if only is not None else ""
            self.status.set(
                inputs.feeder,
                FALLBACK,
                f"{what} not in published envelopes within {settings.derate_deadline_s:g} s",
                self.ctx.now_s(),
                detail=f"fallback envelopes published for {n_sites} sites{behind} (set {set_id}), "
                f"{late_s} s after it was entered",
                network_id=inputs.model.id,
                envelopes_until_s=until_s,
                fallback_sites=n_sites if only is not None else None,
            )
            self._refresh_fallback(inputs, plan=plan)  # the defaults follow the envelopes
            return True
        except Exception:
            log.exception("fallback at the derate deadline failed")
            return False

    def _prepare_fallback(self) -> None:
        """Compute the fallback limits for a change as soon as it is seen, so its deadline only publishes."""
        try:
            with self.ctx.sessions() as session:
                inputs = read_constraints(session, self.ctx.now_s())
            if inputs is not None:
                self._fallback_plan(inputs)
        except Exception:
            log.exception("could not prepare the fallback limits for a new change")

    def _check_expiry(self, now_s: int) -> None:
        """Log (and store) the moment published envelopes end with nothing after them."""
        if self._feeder is None:
            return
        status = self.status.get(self._feeder)
        if status is None:
            return
        now = effective(status, now_s)
        if now.state != status.state:
            self.status.set(
                status.feeder,
                now.state,
                now.reason,
                now_s,
                detail=now.detail,
                network_id=status.network_id,
                envelopes_until_s=status.envelopes_until_s,
                since_s=now.since_s,
            )

    # -- scheduling --------------------------------------------------------------------------------
    def start(self) -> None:
        """Run now, then every `recompute_interval_s`; tick for the publisher lock and the deadlines."""
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(
            self.run_once,
            "interval",
            seconds=self.ctx.settings.recompute_interval_s,
            id="recompute",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            self.watch,
            "interval",
            seconds=self.ctx.settings.change_poll_s,
            id="watch",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        self._scheduler = scheduler
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._tick_loop, name="recompute-ticker", daemon=True)
        self._ticker.start()
        log.info(
            "recomputation every %d s (and within %d s of an operator change) over %d h at %d-minute "
            "intervals (%s); on failure: %s",
            self.ctx.settings.recompute_interval_s,
            self.ctx.settings.change_poll_s,
            self.ctx.settings.envelope_horizon_s // 3600,
            self.ctx.settings.envelope_interval_s // 60,
            self.ctx.settings.allocation_policy,
            self.ctx.settings.failure_policy,
        )

    def watch(self) -> None:
        """Recompute as soon as an operator changes the network, a rating or a derate, or asks for it.

        Polling a fingerprint of those tables works across processes and servers sharing the database.
        A run already in progress is not waited for: it will not publish (its constraints are outdated),
        the next tick recomputes, and the deadline covers the time in between.
        """
        with self.ctx.sessions() as session:
            seen = inputs_fingerprint(session)
        self._check_expiry(self.ctx.now_s())
        if self._inputs_seen is None or seen == self._inputs_seen:
            return
        self.discover()
        if not self._run_lock.acquire(blocking=False):
            return
        try:
            self._attempt("constraint changed")
        finally:
            self._run_lock.release()

    def tick(self) -> None:
        """One look at the deadlines (and, every `change_poll_s`, for new changes to give one)."""
        wall = time.monotonic()
        if wall >= self._next_discovery:
            self._next_discovery = wall + self.ctx.settings.change_poll_s
            if self.discover() and not self.check_deadlines():
                self._prepare_fallback()
        self.check_deadlines()

    def _tick_loop(self) -> None:
        """Takeover and deadlines, in a thread of their own: no running computation can delay them."""
        next_lock = 0.0
        while not self._stopping.wait(TICK_S):
            try:
                wall = time.monotonic()
                if wall >= next_lock:
                    next_lock = wall + self.ctx.settings.publisher_poll_s
                    was = self.publisher.epoch
                    if self.ensure_publisher() and was is None:
                        self.trigger("took over as publisher")
                if self.publisher.epoch is not None:
                    self.tick()
            except Exception:  # the ticker must outlive any one failure
                log.exception("engine ticker")

    def trigger(self, reason: str) -> None:
        """Queue an immediate run (an operator changed a constraint); runs synchronously if not scheduled."""
        if self._scheduler is None:
            self.run_once(reason)
            return
        self._scheduler.add_job(
            self.run_once,
            "date",
            args=[reason],
            id="recompute-now",
            replace_existing=True,
            run_date=datetime.now(UTC),
        )

    def stop(self) -> None:
        """Stop scheduling, ticking, and hand the publisher lock to whoever wants it next."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
            self._ticker = None
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self.publisher.release()
