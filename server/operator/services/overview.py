"""Per network, the state an operator needs at a glance: how devices run (dynamic / stale / fallback),
the last and next recomputation, devices online, the worst constraint, derates and non-compliance."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gridshare.core.settings import Settings
from gridshare.server.operator.services.constraints import (
    ConstraintsReport,
    ConstraintView,
    constraints_report,
)
from gridshare.server.operator.services.networks import NetworkRef, derates, list_networks, registered_sites
from gridshare.server.operator.services.sites import (
    LATE,
    NEVER,
    POLLING,
    PRESUMED_FALLBACK,
    contact_view,
    derc_poll_rate_s,
)
from gridshare.store.models import AssetDerate
from gridshare.store.publication.envelopes import current_set_id
from gridshare.store.publication.status import effective, read_statuses
from gridshare.store.queries.console import contacts
from gridshare.store.queries.networks import last_recomputation


@dataclass(frozen=True)
class Recomputation:
    id: int
    at_s: int
    status: str
    reason: str
    detail: dict[str, object]


@dataclass(frozen=True)
class NetworkSummary:
    name: str
    network_id: int
    timezone: str
    loaded_s: int
    loaded_by: str
    sites: int
    dynamic_sites: int
    registered_sites: int  # its sites an EndDevice is bound to (by NMI)
    current_set_id: int | None  # the envelope set its devices see now
    state: str  # dynamic | stale | fallback | unknown (never computed)
    state_since_s: int | None
    state_reason: str
    state_detail: str
    envelopes_until_s: int | None
    last_recomputation: Recomputation | None
    last_published_s: int | None
    next_recomputation_s: int | None
    devices: int
    devices_polling: int
    devices_late: int
    devices_presumed_fallback: int
    devices_never: int
    worst: ConstraintView | None
    binding_constraints: int
    derates_active: list[AssetDerate]
    derates_planned: list[AssetDerate]
    report: ConstraintsReport | None


def summary(
    session: Session, settings: Settings, net: NetworkRef, now_s: int, horizon_s: int = 86400
) -> NetworkSummary:
    status = next((s for s in read_statuses(session) if s.feeder == net.name), None)
    now_status = effective(status, now_s) if status is not None else None
    # Any version of the network: a rating change or a moved site is a new version, same network.
    last = last_recomputation(session, net.name)
    newest_published = last_recomputation(session, net.name, "published")
    published = newest_published.created_s if newest_published is not None else None
    bound = registered_sites(session, net)
    seen = contacts(session, [s.id for s in bound.values()])
    advertised = derc_poll_rate_s(session, settings)
    states = [
        contact_view(seen.get(s.id), now_s, advertised, settings.device_fallback_timeout_s).state
        for s in bound.values()
    ]
    report = constraints_report(session, net, now_s, horizon_s)
    active, planned = derates(session, net, now_s)
    return NetworkSummary(
        name=net.name,
        network_id=net.model.id,
        timezone=net.nf.network.timezone,
        loaded_s=net.model.loaded_s,
        loaded_by=net.model.loaded_by,
        sites=len(net.nf.sites),
        dynamic_sites=sum(1 for s in net.nf.sites if s.agreement.flexible),
        registered_sites=len(bound),
        current_set_id=current_set_id(session, net.name),
        state=now_status.state if now_status else "unknown",
        state_since_s=now_status.since_s if now_status else None,
        state_reason=now_status.reason if now_status else "no recomputation has run on this network yet",
        state_detail=now_status.detail if now_status else "",
        envelopes_until_s=now_status.envelopes_until_s if now_status else None,
        last_recomputation=None
        if last is None
        else Recomputation(last.id, last.created_s, last.status, last.reason, dict(last.detail or {})),
        last_published_s=published,
        next_recomputation_s=None if last is None else last.created_s + settings.recompute_interval_s,
        devices=len(bound),
        devices_polling=states.count(POLLING),
        devices_late=states.count(LATE),
        devices_presumed_fallback=states.count(PRESUMED_FALLBACK),
        devices_never=states.count(NEVER),
        worst=report.worst() if report else None,
        binding_constraints=sum(1 for c in report.constraints if c.binding_intervals) if report else 0,
        derates_active=active,
        derates_planned=planned,
        report=report,
    )


def overview(session: Session, settings: Settings, now_s: int) -> list[NetworkSummary]:
    return [summary(session, settings, net, now_s) for net in list_networks(session)]
