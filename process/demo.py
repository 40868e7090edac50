"""The demo feeder a fresh `gridshare serve` starts with, bound to the development PKI's devices."""

from __future__ import annotations

import logging

import yaml
from sqlalchemy import select

from gridshare.certs.devpki import DevPki
from gridshare.core.runtime import Runtime
from gridshare.grid.agreements import Dynamic
from gridshare.grid.examples import demo_feeder_path
from gridshare.store.db import transaction
from gridshare.store.models import ClientKind, NetworkModel, Site
from gridshare.store.publication.network_docs import store_network
from gridshare.store.queries.sites import create_site
from gridshare.store.scope import ClientScope

log = logging.getLogger(__name__)

#: The packaged demo feeder (used when the `demo_network_file` setting is unset).
DEMO_FILE = demo_feeder_path()


def seed_demo(ctx: Runtime, pki: DevPki | None) -> None:
    """On an empty store: the demo feeder, and each dev device pre-registered at a dynamic demo site."""
    with ctx.sessions() as session:
        if session.execute(select(NetworkModel.id).limit(1)).first() is not None:
            return
    demo_file = ctx.settings.demo_network_file or DEMO_FILE
    if not demo_file.is_file():
        log.warning("demo network %s not found; starting without one", demo_file)
        return
    with transaction(ctx.sessions) as session:
        _, nf = store_network(session, yaml.safe_load(demo_file.read_text()), "demo", ctx.now_s())
    dynamic = [s for s in nf.sites if s.nmi and isinstance(s.agreement, Dynamic)]
    bound = []
    if pki is not None:
        with transaction(ctx.sessions) as session:
            for client, site in zip(pki.devices, dynamic, strict=False):
                scope = ClientScope(ClientKind.device, client.lfdi, client.sfdi)
                if session.execute(select(Site.id).where(scope.site_filter())).first() is not None:
                    continue
                if session.execute(select(Site.id).where(Site.nmi == site.nmi)).first() is not None:
                    continue  # an EndDevice already holds this NMI (one NMI, one EndDevice)
                row = create_site(
                    session,
                    scope,
                    lfdi=client.lfdi,
                    sfdi=client.sfdi,
                    device_category=0,
                    post_rate_s=None,
                    pin=ctx.settings.default_registration_pin,
                    now_s=ctx.now_s(),
                )
                row.nmi = site.nmi
                bound.append(f"{client.name}->{site.id}")
    log.info(
        "loaded the demo feeder (%d sites)%s",
        len(nf.sites),
        f"; dev devices bound: {', '.join(bound)}" if bound else "",
    )
