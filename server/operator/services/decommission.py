"""Taking a site out of service: remove an EndDevice with everything it owns, or only its mirrors.

Ordinary operator tasks (a site leaves the scheme; a meter is replaced and its old MirrorUsagePoints
must go); the cactus conformance admin plugin composes them too instead of writing to the database.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gridshare.store.models import MirrorUsagePoint, Site


def delete_site(session: Session, site: Site) -> None:
    """Delete the EndDevice; the database cascades its DERs, controls, own defaults, mirrors, readings.

    The certificate is untouched: a device with open registration may register again.
    """
    session.execute(delete(Site).where(Site.id == site.id))


def site_mirrors(session: Session, site: Site) -> list[MirrorUsagePoint]:
    query = select(MirrorUsagePoint).where(MirrorUsagePoint.site_id == site.id).order_by(MirrorUsagePoint.id)
    return list(session.execute(query).scalars())


def delete_site_mirrors(session: Session, site: Site) -> list[int]:
    """Delete every MirrorUsagePoint of the site with its readings; returns their ids."""
    ids = list(
        session.execute(select(MirrorUsagePoint.id).where(MirrorUsagePoint.site_id == site.id)).scalars()
    )
    if ids:
        session.execute(delete(MirrorUsagePoint).where(MirrorUsagePoint.id.in_(ids)))
    return ids
