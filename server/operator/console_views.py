"""Service dataclasses -> JSON schemas (shared by the JSON routes and the console's data endpoints)."""

from __future__ import annotations

from dataclasses import asdict

from gridshare.server.operator.console_schemas import (
    DayOut,
    DevicesOut,
    NetworkSummaryOut,
    RecomputationOut,
    SiteComplianceOut,
    SiteLedgerOut,
    WorstConstraintOut,
)
from gridshare.server.operator.network_schemas import DerateOut
from gridshare.server.operator.services.compliance import SiteCompliance
from gridshare.server.operator.services.curtailment import SiteLedger
from gridshare.server.operator.services.overview import NetworkSummary


def summary_out(s: NetworkSummary) -> NetworkSummaryOut:
    return NetworkSummaryOut(
        name=s.name,
        network_id=s.network_id,
        timezone=s.timezone,
        loaded_s=s.loaded_s,
        loaded_by=s.loaded_by,
        sites=s.sites,
        dynamic_sites=s.dynamic_sites,
        registered_sites=s.registered_sites,
        current_set_id=s.current_set_id,
        state=s.state,
        state_since_s=s.state_since_s,
        state_reason=s.state_reason,
        state_detail=s.state_detail,
        envelopes_until_s=s.envelopes_until_s,
        last_recomputation=RecomputationOut.model_validate(s.last_recomputation)
        if s.last_recomputation
        else None,
        last_published_s=s.last_published_s,
        next_recomputation_s=s.next_recomputation_s,
        devices=DevicesOut(
            total=s.devices,
            polling=s.devices_polling,
            late=s.devices_late,
            presumed_on_fallback=s.devices_presumed_fallback,
            never_connected=s.devices_never,
        ),
        worst_constraint=WorstConstraintOut.model_validate(s.worst) if s.worst else None,
        binding_constraints=s.binding_constraints,
        derates_active=[DerateOut.model_validate(d) for d in s.derates_active],
        derates_planned=[DerateOut.model_validate(d) for d in s.derates_planned],
    )


def compliance_out(c: SiteCompliance) -> SiteComplianceOut:
    return SiteComplianceOut(
        site_id=c.site_id,
        nmi=c.nmi,
        network_site_id=c.network_site_id,
        from_s=c.from_s,
        until_s=c.until_s,
        readings=c.result.readings,
        intervals=c.result.intervals,
        compliant_intervals=c.result.compliant_intervals,
        share_compliant=c.result.share_compliant,
        worst_excess_w=c.result.worst_excess_w,
        allowance=asdict(c.allowance),
        breaches=[asdict(b) for b in c.breaches],
    )


def ledger_out(ledger: SiteLedger) -> SiteLedgerOut:
    s = ledger.settlement
    return SiteLedgerOut(
        site_id=ledger.site_id,
        network=ledger.network,
        network_site_id=ledger.network_site_id,
        nmi=ledger.nmi,
        year=ledger.year,
        from_s=ledger.from_s,
        until_s=ledger.until_s,
        settlement={
            "curtailed_kwh": round(s.curtailed_kwh, 3),
            "potential_kwh": round(s.potential_kwh, 3),
            "curtailed_pct": None if s.curtailed_pct is None else round(s.curtailed_pct, 3),
            "guarantee": None if s.guarantee is None else asdict(s.guarantee),
            "allowed_kwh": None if s.allowed_kwh is None else round(s.allowed_kwh, 3),
            "beyond_kwh": round(s.beyond_kwh, 3),
            "owed": round(s.owed, 2),
        },
        days=[
            DayOut(
                day=d.day.isoformat(),
                intervals=d.intervals,
                telemetry_intervals=d.telemetry_intervals,
                potential_export_kwh=round(d.potential_export_kwh, 3),
                curtailed_export_kwh=round(d.curtailed_export_kwh, 3),
                potential_import_kwh=round(d.potential_import_kwh, 3),
                curtailed_import_kwh=round(d.curtailed_import_kwh, 3),
            )
            for d in ledger.days
        ],
    )
