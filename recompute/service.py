"""The recomputation loop: read inputs, compute envelopes, publish atomically; on a schedule and on demand.

APScheduler runs `run_once` every `recompute_interval_s` on a rolling horizon, and `trigger()` queues an
immediate run after an operator changes a constraint. Runs never overlap in one process, and the
publisher lease keeps a second server on the same database from publishing too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from envelopes.compute import compute_envelopes
from envelopes.forecast import ProfileSpec, persistence_forecast, profile_forecast
from envelopes.network import Site as NetworkSite
from gridshare.settings import Settings
from recompute import lease
from recompute.inputs import (
    active_derates,
    active_network,
    apply_derates,
    inputs_fingerprint,
    latest_telemetry,
    registered_sites,
)
from recompute.publish import PublishSummary, current_set_id, publish
from server.context import AppContext
from store.db import transaction
from store.models import DerProgram, EnvelopeSetRecord

log = logging.getLogger("gridshare.recompute")


@dataclass(frozen=True)
class Outcome:
    status: str  # published | skipped | failed
    reason: str
    envelope_set_id: int | None = None
    summary: PublishSummary | None = None
    detail: str = ""
    compute_s: float = 0.0
    publish_s: float = 0.0


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


class Recomputer:
    def __init__(self, ctx: AppContext, holder: str | None = None) -> None:
        self.ctx = ctx
        self.holder = holder or lease.holder_id()
        self._run_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        self._inputs_seen: tuple[object, ...] | None = None

    # -- one run -----------------------------------------------------------------------------------
    def run_once(self, reason: str = "scheduled") -> Outcome:
        with self._run_lock:
            try:
                return self._run(reason)
            except Exception as exc:  # the engine must never take the server down with it
                log.exception("recomputation (%s) failed: %s", reason, exc)
                self._record_failure(reason, f"{type(exc).__name__}: {exc}")
                return Outcome("failed", reason, detail=str(exc))

    def _run(self, reason: str) -> Outcome:
        settings = self.ctx.settings
        now_s = self.ctx.now_s()
        t0 = time.perf_counter()
        with self.ctx.sessions() as session:
            self._inputs_seen = inputs_fingerprint(session)
            loaded = active_network(session)
            if loaded is None:
                log.info("recomputation (%s) skipped: no network loaded", reason)
                return Outcome("skipped", reason, detail="no network loaded")
            model, nf = loaded
            derated = apply_derates(nf.network, active_derates(session, now_s))
            network = derated.network
            nmi_to_site_id = {s.nmi: s.id for s in nf.sites if s.nmi}
            store_sites = registered_sites(session, set(nmi_to_site_id))
            telemetry = latest_telemetry(
                session,
                {n: s.id for n, s in store_sites.items()},
                since_s=now_s - settings.envelope_interval_s * 3,
            )
            program = (
                session.execute(select(DerProgram).order_by(DerProgram.primacy, DerProgram.id))
                .scalars()
                .first()
            )
        # The horizon starts with the interval now running, so a change reaches devices at once.
        start = datetime.fromtimestamp(now_s - now_s % settings.envelope_interval_s, UTC)
        forecasts = None
        if telemetry:
            by_id = {nmi_to_site_id[nmi]: t for nmi, t in telemetry.items()}
            specs = {
                s.id: ProfileSpec(s.pv_kw, s.load_kw, s.load_profile)
                for s in nf.sites
                if s.id in by_id and s.node not in derated.isolated_nodes
            }
            by_id = {k: v for k, v in by_id.items() if k in specs}
            base = profile_forecast(
                specs,
                start,
                settings.envelope_interval_s,
                settings.envelope_horizon_s // settings.envelope_interval_s,
                tz=network.timezone,
                latitude_deg=network.latitude_deg,
                longitude_deg=network.longitude_deg,
                issued_at=datetime.fromtimestamp(now_s, UTC),
            )
            forecasts = persistence_forecast(base, by_id)
        live_sites = [s for s in nf.sites if s.node not in derated.isolated_nodes]
        envelopes = compute_envelopes(
            network,
            live_sites,
            start,
            settings.envelope_horizon_s,
            settings.envelope_interval_s,
            settings.allocation_policy,
            forecasts,
        )
        compute_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        with transaction(self.ctx.sessions) as session:
            ttl_s = 3 * settings.recompute_interval_s
            if not lease.acquire(session, self.holder, self.ctx.now_s(), ttl_s):
                log.info(
                    "recomputation (%s) not published: another instance holds the publisher lease", reason
                )
                return Outcome("skipped", reason, detail="another instance is the publisher")
            # Strictly newer than the set it replaces, so its blocks win every supersession tie.
            previous = session.get(EnvelopeSetRecord, current_set_id(session) or 0)
            created_s = max(now_s, previous.created_s + 1) if previous is not None else now_s
            record = EnvelopeSetRecord(
                network_id=model.id,
                created_s=created_s,
                start_s=int(start.timestamp()),
                interval_s=settings.envelope_interval_s,
                n_intervals=envelopes.n_intervals,
                program_id=program.id if program is not None else None,
                policy=settings.allocation_policy,
                reason=reason[:64],
                status="published",
                detail={},
            )
            session.add(record)
            session.flush()
            by_nmi = {s.nmi: s for s in nf.sites if s.nmi}
            sites = {
                by_nmi[nmi].id: site
                for nmi, site in store_sites.items()
                if by_nmi[nmi].node not in derated.isolated_nodes
            }
            cut_off = [
                site for nmi, site in store_sites.items() if by_nmi[nmi].node in derated.isolated_nodes
            ]
            summary = publish(
                session, envelopes, sites, record, now_s, _resolutions(nf.sites, settings), cut_off
            )
            publish_s = time.perf_counter() - t1
            binding = {d: envelopes.binding_count(d) for d in ("export", "import")}
            record.detail = {
                "sites_published": summary.sites,
                "blocks": summary.blocks,
                "blocks_new": summary.blocks_new,
                "binding": binding,
                "infeasible": len(envelopes.infeasibilities),
                "compute_s": round(compute_s, 3),
                "publish_s": round(publish_s, 3),
                "telemetry_sites": len(telemetry),
            }
        log.info(
            "envelopes published (%s): set %d, %d intervals from %s, %d of %d sites, %d blocks (%d new), "
            "binding export/import %d/%d, %d infeasible, compute %.2fs publish %.2fs",
            reason,
            record.id,
            envelopes.n_intervals,
            start.isoformat(),
            summary.sites,
            len(nf.sites),
            summary.blocks,
            summary.blocks_new,
            binding["export"],
            binding["import"],
            len(envelopes.infeasibilities),
            compute_s,
            publish_s,
        )
        return Outcome("published", reason, record.id, summary, compute_s=compute_s, publish_s=publish_s)

    def _record_failure(self, reason: str, detail: str) -> None:
        try:
            with transaction(self.ctx.sessions) as session:
                session.add(
                    EnvelopeSetRecord(
                        network_id=None,
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

    # -- scheduling --------------------------------------------------------------------------------
    def start(self) -> None:
        """Run now, then every `recompute_interval_s`, in a background thread."""
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
        log.info(
            "recomputation every %d s over %d h at %d-minute intervals (%s)",
            self.ctx.settings.recompute_interval_s,
            self.ctx.settings.envelope_horizon_s // 3600,
            self.ctx.settings.envelope_interval_s // 60,
            self.ctx.settings.allocation_policy,
        )

    def watch(self) -> None:
        """Recompute as soon as an operator changes the network, a rating or a derate, or asks for it.

        Polling a fingerprint of those tables works across processes and servers sharing the database.
        """
        with self.ctx.sessions() as session:
            seen = inputs_fingerprint(session)
        if self._inputs_seen is not None and seen != self._inputs_seen:
            self.run_once("constraint changed")

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
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
