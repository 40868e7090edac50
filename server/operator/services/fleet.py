"""Devices by last contact: who polls, who is late, who is presumed on fallback, who never connected."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridshare.core.settings import Settings
from gridshare.server.operator.services.networks import list_networks
from gridshare.server.operator.services.sites import (
    NEVER,
    PRESUMED_FALLBACK,
    ContactView,
    contact_view,
    derc_poll_rate_s,
)
from gridshare.store.models import Site
from gridshare.store.queries.console import contacts


@dataclass(frozen=True)
class FleetRow:
    site_id: int
    lfdi: str
    nmi: str | None
    enabled: bool
    aggregator_id: int | None
    network: str | None
    network_site_id: str | None
    contact: ContactView


def fleet(session: Session, settings: Settings, now_s: int) -> list[FleetRow]:
    """Every EndDevice (site): presumed on fallback first, then late, never connected, polling."""
    by_nmi = {s.nmi: (net.name, s.id) for net in list_networks(session) for s in net.nf.sites if s.nmi}
    seen = contacts(session)
    advertised = derc_poll_rate_s(session, settings)
    rows = []
    for site in session.execute(select(Site).order_by(Site.id)).scalars():
        where = by_nmi.get(site.nmi or "")
        rows.append(
            FleetRow(
                site_id=site.id,
                lfdi=site.lfdi,
                nmi=site.nmi,
                enabled=site.enabled,
                aggregator_id=site.aggregator_id,
                network=where[0] if where else None,
                network_site_id=where[1] if where else None,
                contact=contact_view(
                    seen.get(site.id), now_s, advertised, settings.device_fallback_timeout_s
                ),
            )
        )
    order = {PRESUMED_FALLBACK: 0, "late": 1, NEVER: 2, "polling": 3}
    rows.sort(key=lambda r: (order.get(r.contact.state, 9), -(r.contact.silent_s or 0), r.site_id))
    return rows
