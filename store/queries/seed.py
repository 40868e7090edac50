"""A usable baseline in an empty store: one program to find, and the development aggregators registered."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import select

from gridshare.core.mrid import new_mrid
from gridshare.core.runtime import Runtime
from gridshare.store.db import transaction
from gridshare.store.models import ClientKind, DefaultDerControl, DerProgram, FunctionSetAssignments
from gridshare.store.queries.identity import add_aggregator, register_certificate

log = logging.getLogger(__name__)


class ClientCertificate(Protocol):
    """What registering a certificate needs of it (certs.devpki's issued clients have these)."""

    @property
    def name(self) -> str: ...
    @property
    def lfdi(self) -> str: ...
    @property
    def sfdi(self) -> int: ...


def seed_baseline(ctx: Runtime) -> None:
    """An empty store gets one FSA with one DOE program and its DefaultDERControl, so clients find a program.

    The default export limit is a typed constant here; the fallback engine replaces it with a derived one.
    """
    now_s = ctx.now_s()
    with transaction(ctx.sessions) as session:
        if session.execute(select(FunctionSetAssignments.id).limit(1)).first() is not None:
            return
        fsa = FunctionSetAssignments(
            mrid=new_mrid(ctx.settings.pen), description="GridShare", changed_s=now_s
        )
        program = DerProgram(
            mrid=new_mrid(ctx.settings.pen), description="Dynamic envelopes", primacy=1, changed_s=now_s
        )
        fsa.programs.append(program)
        session.add(fsa)
        session.flush()
        session.add(
            DefaultDerControl(
                mrid=new_mrid(ctx.settings.pen),
                program_id=program.id,
                site_id=None,
                description="Safe default",
                export_limit_w=ctx.settings.default_export_limit_w,
                import_limit_w=ctx.settings.default_import_limit_w,
                set_grad_w_hundredths=ctx.settings.default_set_grad_w_hundredths,
                changed_s=now_s,
            )
        )
    log.info("seeded an empty store with one FSA, one DER program and its DefaultDERControl")


def register_dev_aggregators(ctx: Runtime, aggregators: Iterable[ClientCertificate]) -> None:
    """Register each (development) aggregator certificate as an aggregator of its own: they work at once."""
    with transaction(ctx.sessions) as session:
        for client in aggregators:
            agg = add_aggregator(session, client.name, ctx.now_s())
            register_certificate(
                session,
                lfdi=client.lfdi,
                sfdi=client.sfdi,
                kind=ClientKind.aggregator,
                aggregator_id=agg.id,
                now_s=ctx.now_s(),
            )
