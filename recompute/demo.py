"""The demo feeder a fresh `gridshare serve` starts with, bound to the development PKI's devices."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from sqlalchemy import select

from certs.devpki import DevPki
from envelopes.agreements import Dynamic
from recompute.network_docs import store_network
from server.context import AppContext
from store.db import transaction
from store.models import ClientKind, NetworkModel, Site
from store.queries.sites import create_site
from store.scope import ClientScope

log = logging.getLogger(__name__)

#: The repository's demo feeder (the default of the `demo_network_file` setting).
DEMO_FILE = Path(__file__).resolve().parent.parent / "examples" / "demo-feeder.yaml"


def seed_demo(ctx: AppContext, pki: DevPki | None) -> None:
    """On an empty store: the demo feeder, and each dev device pre-registered at a dynamic demo site."""
    with ctx.sessions() as session:
        if session.execute(select(NetworkModel.id).limit(1)).first() is not None:
            return
    demo_file = ctx.settings.demo_network_file
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
