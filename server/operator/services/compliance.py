"""Compliance per site and for the fleet: telemetry against the limits in force (performance.compliance)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.core.settings import Settings
from gridshare.fallback.ramp import site_rating_w
from gridshare.performance.compliance import Breach, Compliance, assess
from gridshare.performance.timeline import LimitTimeline
from gridshare.server.operator.services.networks import network_site_of
from gridshare.store.models import Site
from gridshare.store.queries.console import limit_spans, net_power, sites_with_telemetry
from gridshare.store.queries.programs import default_control, first_program_id


@dataclass(frozen=True)
class Allowance:
    response_s: int
    ramp_w_per_s: float | None  # None: no ramp given (setGradW unset), the new limit applies after response_s
    tolerance_w: float
    rating_w: float


@dataclass(frozen=True)
class SiteCompliance:
    site_id: int
    nmi: str | None
    network_site_id: str | None
    from_s: int
    until_s: int
    allowance: Allowance
    result: Compliance

    @property
    def breaches(self) -> tuple[Breach, ...]:
        return self.result.breaches


def allowance_for(
    session: Session, settings: Settings, site: Site
) -> tuple[Allowance, float | None, float | None]:
    """The device's allowance, and its DefaultDERControl export / import limits (None: unlimited)."""
    bound = network_site_of(session, site)
    rating_w = site_rating_w(bound[1]) if bound is not None else 0.0
    program_id = first_program_id(session)
    default = default_control(session, site, program_id) if program_id else None
    grad = default.set_grad_w_hundredths if default is not None else None
    ramp = (
        None if not grad or rating_w <= 0 else grad / 100.0 / 100.0 * rating_w
    )  # hundredths of %/s of rating
    tolerance = max(settings.compliance_tolerance_w, settings.compliance_tolerance_pct / 100.0 * rating_w)
    allowance = Allowance(settings.compliance_response_s, ramp, tolerance, rating_w)
    if default is None:
        return allowance, None, None
    return allowance, default.export_limit_w, default.import_limit_w


def site_compliance(
    session: Session, settings: Settings, site: Site, from_s: int, until_s: int
) -> SiteCompliance:
    allowance, default_export, default_import = allowance_for(session, settings, site)
    timeline = LimitTimeline.build(
        limit_spans(session, site.id, from_s, until_s), default_export, default_import
    )
    power = net_power(session, site.id, from_s, until_s)
    result = assess(
        power.t_s,
        power.export_w,
        timeline,
        settings.envelope_interval_s,
        response_s=allowance.response_s,
        ramp_w_per_s=allowance.ramp_w_per_s if allowance.ramp_w_per_s is not None else float("inf"),
        tolerance_w=allowance.tolerance_w,
    )
    bound = network_site_of(session, site)
    return SiteCompliance(
        site_id=site.id,
        nmi=site.nmi,
        network_site_id=bound[1].id if bound else None,
        from_s=from_s,
        until_s=until_s,
        allowance=allowance,
        result=result,
    )


def fleet_compliance(
    session: Session, settings: Settings, from_s: int, until_s: int, site_ids: set[int] | None = None
) -> list[SiteCompliance]:
    """Every site with telemetry in the window, worst first (lowest share compliant, then largest excess)."""
    ids = sites_with_telemetry(session, from_s)
    if site_ids is not None:
        ids &= site_ids
    sites = session.execute(select(Site).where(Site.id.in_(sorted(ids)))).scalars().all() if ids else []
    out = [site_compliance(session, settings, s, from_s, until_s) for s in sites]
    out.sort(
        key=lambda c: (
            c.result.share_compliant if c.result.share_compliant is not None else 1.0,
            -c.result.worst_excess_w,
        )
    )
    return out
