"""What the engine decided and what happened, per network (by name) and per site: the operator's views.

Handlers parse and answer; the reading lives in server/operator/services/. Paths about a network take
its name (`GET /networks` lists them), so they keep their meaning when the store holds several.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from gridshare.server.operator.auth import context
from gridshare.server.operator.console_schemas import (
    ConstraintsOut,
    FleetComplianceOut,
    FleetRowOut,
    LedgerOut,
    NetworkSiteOut,
    NetworkSummaryOut,
    SiteComplianceOut,
    SiteLedgerOut,
    SiteStatusOut,
)
from gridshare.server.operator.console_views import compliance_out, ledger_out, summary_out
from gridshare.server.operator.deps import Id, found, read_session
from gridshare.server.operator.services import compliance, curtailment, fleet, overview, sites
from gridshare.server.operator.services.constraints import constraints_report
from gridshare.server.operator.services.networks import (
    NetworkRef,
    list_networks,
    network_named,
    network_site_of,
    registered_sites,
)
from gridshare.store.models import Site
from gridshare.store.queries.console import contacts

router = APIRouter(tags=["views"])

Hours = Query(24, ge=1, le=24 * 400, description="how far back to look, hours")
Year = Query(
    None, ge=2000, le=2200, description="calendar year in the network's time zone (default: this year)"
)


def _network(session: Session, name: str) -> NetworkRef:
    net = network_named(session, name)
    if net is None:
        names = ", ".join(n.name for n in list_networks(session)) or "none loaded"
        raise HTTPException(404, f"no network named {name!r} (networks: {names})")
    return net


@router.get("/networks", response_model=list[NetworkSummaryOut])
def networks(request: Request, session: Session = Depends(read_session)) -> list[NetworkSummaryOut]:
    """Every network: how devices run now, last and next recomputation, devices online, worst constraint."""
    ctx = context(request)
    return [summary_out(s) for s in overview.overview(session, ctx.settings, ctx.now_s())]


@router.get("/networks/{name}", response_model=NetworkSummaryOut)
def network_summary(
    name: str, request: Request, session: Session = Depends(read_session)
) -> NetworkSummaryOut:
    ctx = context(request)
    return summary_out(overview.summary(session, ctx.settings, _network(session, name), ctx.now_s()))


@router.get("/networks/{name}/constraints", response_model=ConstraintsOut)
def network_constraints(
    name: str,
    request: Request,
    session: Session = Depends(read_session),
    hours: int = Query(24, ge=1, le=168, description="intervals starting within this many hours from now"),
) -> ConstraintsOut:
    """Per constraint and interval: rating, loading forecast, loading with flexible sites, headroom, binding.

    As the live engine computed them with its newest publication on this network version.
    """
    ctx = context(request)
    report = constraints_report(session, _network(session, name), ctx.now_s(), hours * 3600)
    return ConstraintsOut.model_validate(found(report, "constraint report (no envelopes computed on it yet)"))


@router.get("/networks/{name}/sites", response_model=list[NetworkSiteOut])
def network_sites(
    name: str, request: Request, session: Session = Depends(read_session)
) -> list[NetworkSiteOut]:
    """The network's sites in file order, with the EndDevice bound to each (by NMI) and its contact state."""
    ctx = context(request)
    net = _network(session, name)
    bound = registered_sites(session, net)
    seen = contacts(session, [s.id for s in bound.values()])
    advertised = sites.derc_poll_rate_s(session, ctx.settings)
    out = []
    for s in net.nf.sites:
        row = bound.get(s.id)
        state = (
            None
            if row is None
            else sites.contact_view(
                seen.get(row.id), ctx.now_s(), advertised, ctx.settings.device_fallback_timeout_s
            ).state
        )
        out.append(
            NetworkSiteOut(
                network_site_id=s.id,
                node=s.node,
                nmi=s.nmi,
                agreement=sites.describe_agreement(s),
                agreement_kind=s.agreement.kind,
                max_export_w=s.max_export_w,
                max_import_w=s.max_import_w,
                site_id=row.id if row else None,
                contact_state=state,
            )
        )
    return out


@router.get("/networks/{name}/compliance", response_model=FleetComplianceOut)
def network_compliance(
    name: str, request: Request, session: Session = Depends(read_session), hours: int = Hours
) -> FleetComplianceOut:
    """Every site of the network that sent telemetry, worst first, and the devices presumed on fallback."""
    ctx = context(request)
    net = _network(session, name)
    now = ctx.now_s()
    bound = registered_sites(session, net)
    results = compliance.fleet_compliance(
        session, ctx.settings, now - hours * 3600, now, {s.id for s in bound.values()}
    )
    rows = [r for r in fleet.fleet(session, ctx.settings, now) if r.network == net.name]
    return FleetComplianceOut(
        network=net.name,
        from_s=now - hours * 3600,
        until_s=now,
        sites_assessed=len(results),
        sites_non_compliant=sum(1 for r in results if r.breaches),
        presumed_on_fallback=[r.site_id for r in rows if r.contact.state == sites.PRESUMED_FALLBACK],
        sites=[compliance_out(r) for r in results],
    )


@router.get("/networks/{name}/curtailment", response_model=LedgerOut)
def network_curtailment(
    name: str, request: Request, session: Session = Depends(read_session), year: int | None = Year
) -> LedgerOut:
    """Per flexible site per day: energy its envelope held back, year to date, against its guarantee."""
    ctx = context(request)
    net = _network(session, name)
    y = year or curtailment.current_year(net.nf.network.timezone, ctx.now_s())
    ledgers = curtailment.network_ledger(session, ctx.settings, net, y, ctx.now_s())
    return LedgerOut(
        network=net.name, year=y, method=curtailment.METHOD, sites=[ledger_out(x) for x in ledgers]
    )


@router.get(
    "/networks/{name}/curtailment.csv",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "one row per site per day"}},
)
def network_curtailment_csv(
    name: str, request: Request, session: Session = Depends(read_session), year: int | None = Year
) -> PlainTextResponse:
    """The ledger as CSV, one row per site per day with the year-to-date position after it."""
    ctx = context(request)
    net = _network(session, name)
    y = year or curtailment.current_year(net.nf.network.timezone, ctx.now_s())
    text = curtailment.ledger_csv(curtailment.network_ledger(session, ctx.settings, net, y, ctx.now_s()))
    filename = f"curtailment-{net.name}-{y}.csv"
    return PlainTextResponse(
        text, media_type="text/csv", headers={"content-disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/sites/{site_id}/status", response_model=SiteStatusOut)
def site_status(site_id: Id, request: Request, session: Session = Depends(read_session)) -> SiteStatusOut:
    """The site's published envelope over the horizon (what set each limit), its DefaultDERControl and
    why, its device's last contact and poll rate, and its latest telemetry."""
    ctx = context(request)
    ctx.contacts.flush(ctx.sessions)  # this process's own recent polls, before reading
    site = found(session.get(Site, site_id), "site")
    view = sites.site_view(
        session, ctx.settings, site, ctx.now_s(), contacts(session, [site.id]).get(site.id)
    )
    return SiteStatusOut.model_validate(view)


@router.get("/sites/{site_id}/compliance", response_model=SiteComplianceOut)
def site_compliance(
    site_id: Id, request: Request, session: Session = Depends(read_session), hours: int = Hours
) -> SiteComplianceOut:
    """Measured power against the limit in force, with the device's response time, ramp and tolerance."""
    ctx = context(request)
    site = found(session.get(Site, site_id), "site")
    now = ctx.now_s()
    return compliance_out(compliance.site_compliance(session, ctx.settings, site, now - hours * 3600, now))


@router.get("/sites/{site_id}/curtailment", response_model=SiteLedgerOut)
def site_curtailment(
    site_id: Id, request: Request, session: Session = Depends(read_session), year: int | None = Year
) -> SiteLedgerOut:
    ctx = context(request)
    site = found(session.get(Site, site_id), "site")
    bound = found(
        network_site_of(session, site), "network site for this EndDevice (is its NMI in the network?)"
    )
    net, nsite = bound
    y = year or curtailment.current_year(net.nf.network.timezone, ctx.now_s())
    return ledger_out(curtailment.site_ledger(session, ctx.settings, net, nsite, site, y, ctx.now_s()))


@router.get("/fleet", response_model=list[FleetRowOut])
def fleet_view(request: Request, session: Session = Depends(read_session)) -> list[FleetRowOut]:
    """Every EndDevice by last contact: presumed on fallback first, then late, never connected, polling."""
    ctx = context(request)
    ctx.contacts.flush(ctx.sessions)
    return [FleetRowOut.model_validate(r) for r in fleet.fleet(session, ctx.settings, ctx.now_s())]
