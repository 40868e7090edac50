"""Writing sites (EndDevices) and their connection agreements for the operator API.

The checks that answer 409 (an NMI held elsewhere, a duplicate lFDI) stay with the routes, which know
the HTTP answer; these functions change the store once the request is known to be acceptable.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from gridshare.store.models import ClientKind, ConnectionAgreement, Site
from gridshare.store.queries.sites import create_site
from gridshare.store.scope import ClientScope


def owner_scope(lfdi: str, aggregator_id: int | None) -> ClientScope:
    """The scope a new site is created in: its aggregator's, or the device's own."""
    if aggregator_id is not None:
        return ClientScope(ClientKind.aggregator, "", 0, aggregator_id)
    return ClientScope(ClientKind.device, lfdi, 0)


def add_site(
    session: Session,
    *,
    lfdi: str,
    sfdi: int,
    aggregator_id: int | None,
    device_category: int,
    post_rate_s: int | None,
    pin: int,
    now_s: int,
) -> Site:
    return create_site(
        session,
        owner_scope(lfdi, aggregator_id),
        lfdi=lfdi,
        sfdi=sfdi,
        device_category=device_category,
        post_rate_s=post_rate_s,
        pin=pin,
        now_s=now_s,
    )


def bind_nmi(session: Session, site: Site, nmi: str | None) -> None:
    site.nmi = nmi
    session.flush()


def change_site(site: Site, changes: dict[str, Any], now_s: int) -> None:
    """Apply checked changes (NMI, enabled, post rate); the EndDevice's changedTime moves."""
    for name, value in changes.items():
        setattr(site, name, value)
    site.changed_s = now_s


def set_agreement(session: Session, site: Site, values: dict[str, Any]) -> ConnectionAgreement:
    """Replace the site's agreement as a whole (fields not given are cleared)."""
    row = site.agreement or ConnectionAgreement(site_id=site.id)
    for name, value in values.items():
        setattr(row, name, value)
    if site.agreement is None:
        session.add(row)
    session.flush()
    return row


def delete_agreement(session: Session, agreement: ConnectionAgreement) -> None:
    session.delete(agreement)
