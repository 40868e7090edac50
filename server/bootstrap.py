"""Start-up work for `gridshare serve`: TLS material, schema upgrade, and a usable baseline in the store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.engine import make_url

from gridshare.certs.devpki import DevPki, ensure_dev_pki
from gridshare.core.clock import Clock, SystemClock
from gridshare.core.settings import Settings
from gridshare.server.context import AppContext
from gridshare.server.mrid import new_mrid
from gridshare.server.shared.self_identity import load_server_identity
from gridshare.store.db import make_engine, session_factory, store_exists, transaction, upgrade
from gridshare.store.models import ClientKind, DefaultDerControl, DerProgram, FunctionSetAssignments
from gridshare.store.queries.identity import add_aggregator, register_certificate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path


def tls_files(settings: Settings) -> TlsFiles:
    """Configured TLS files, or a development PKI generated in data_dir/pki on first start."""
    if settings.tls_cert_file and settings.tls_key_file and settings.tls_ca_file:
        return TlsFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)
    if not settings.dev_pki:
        raise SystemExit(
            "set GRIDSHARE_TLS_CERT_FILE, GRIDSHARE_TLS_KEY_FILE and GRIDSHARE_TLS_CA_FILE "
            "(or GRIDSHARE_DEV_PKI=true for a development PKI)"
        )
    pki = ensure_dev_pki(settings.pki_dir)
    return TlsFiles(pki.server_cert_path, pki.server_key_path, pki.ca_path)


class StoreMissing(Exception):
    """An admin command was pointed at a database that holds no GridShare store."""


def describe_store(settings: Settings) -> str:
    """The store as an operator would look for it: the SQLite file, or the URL without its password."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return str(url.database)
    return url.render_as_string(hide_password=True)


def build_context(
    settings: Settings,
    clock: Clock | None = None,
    *,
    create: bool = True,
    schema_log: Literal["info", "debug"] = "info",
) -> AppContext:
    """Open the store (upgrading its schema); `create=False` refuses to make a new one (admin commands)."""
    if not create and not store_exists(settings.effective_database_url):
        raise StoreMissing(
            f"no GridShare store at {describe_store(settings)}: start `gridshare serve` with the same "
            "--data-dir (or GRIDSHARE_DATABASE_URL) once to create it, or point --data-dir at an existing one"
        )
    engine = make_engine(settings.effective_database_url)
    upgrade(engine, logging.INFO if schema_log == "info" else logging.DEBUG)
    clock = clock or SystemClock()
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        clock=clock,
        self_identity=load_server_identity(settings, int(clock.now())),
    )


def seed_baseline(ctx: AppContext) -> None:
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


def register_dev_aggregators(ctx: AppContext, pki: DevPki) -> None:
    """The dev PKI's aggregator certificates work out of the box: register them as one aggregator each."""
    with transaction(ctx.sessions) as session:
        for client in pki.aggregators:
            agg = add_aggregator(session, client.name, ctx.now_s())
            register_certificate(
                session,
                lfdi=client.lfdi,
                sfdi=client.sfdi,
                kind=ClientKind.aggregator,
                aggregator_id=agg.id,
                now_s=ctx.now_s(),
            )
