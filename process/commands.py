"""`gridshare serve` and `gridshare admin …`: run the endpoint and manage who may connect."""

from __future__ import annotations

from pathlib import Path

import click

from gridshare.certs.identity import DeviceIdentity, load_certificates
from gridshare.core.logs import use_format
from gridshare.process.cli_support import admin_context, data_dir_option, load_settings
from gridshare.process.token_commands import token_group


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 8443].")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Serving processes (SO_REUSEPORT).",
)
@data_dir_option
@click.option(
    "--roles",
    default=None,
    metavar="LIST",
    help="What this process does, comma-separated from serve, operator, publish, notify "
    "[default: the `roles` setting, all four].",
)
def serve_command(
    host: str | None, port: int | None, workers: int, data_dir: Path | None, roles: str | None
) -> None:
    """Serve the CSIP-AUS endpoint over mutual TLS (https://127.0.0.1:8443/dcap by default).

    The store is GRIDSHARE_DATABASE_URL (default: SQLite in the data dir); its schema is upgraded on
    start. Without configured TLS files a development PKI is generated in DATA_DIR/pki on first start.

    Behind a TLS-terminating proxy, run several processes with `--roles serve` and exactly one with
    `--roles operator,publish,notify` on the same database (docs/deployment.md).
    """
    from gridshare.process.run import serve

    settings = load_settings(host=host, port=port, data_dir=data_dir, roles=roles)
    use_format(settings.log_format)
    serve(settings, workers=workers)


@click.group("admin")
def admin_group() -> None:
    """Manage an existing store: aggregators and their certificates, operator API tokens.

    Each command takes --data-dir (or GRIDSHARE_DATA_DIR / GRIDSHARE_DATABASE_URL) like `serve`, and
    refuses to create a new store: `gridshare serve` creates it on first start, `admin init` without
    serving.
    """


@admin_group.command("init")
@data_dir_option
def init_command(data_dir: Path | None) -> None:
    """Create the store (or bring its schema up to date) without serving, e.g. to add a token first."""
    from gridshare.server.shared.context import build_context, describe_store
    from gridshare.store.db import store_exists
    from gridshare.store.queries.seed import seed_baseline

    settings = load_settings(data_dir=data_dir)
    existed = store_exists(settings.effective_database_url)
    ctx = build_context(settings, schema_log="debug")
    try:
        seed_baseline(ctx)
    finally:
        ctx.engine.dispose()
    click.echo(f"{'store is ready' if existed else 'created a new store'}: {describe_store(settings)}")


@admin_group.command("add-aggregator")
@click.argument("name")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
def add_aggregator_command(name: str, cert: Path, data_dir: Path | None) -> None:
    """Register CERT (PEM, leaf first) as a client certificate of aggregator NAME."""
    from gridshare.store.db import transaction
    from gridshare.store.models import ClientKind
    from gridshare.store.queries.identity import add_aggregator, register_certificate

    try:
        leaf = load_certificates(cert)[0]
    except ValueError as exc:
        raise click.ClickException(f"{cert}: {exc}") from None
    ident = DeviceIdentity.from_certificate(leaf)
    ctx = admin_context(data_dir)
    try:
        with transaction(ctx.sessions) as session:
            agg = add_aggregator(session, name, ctx.now_s())
            register_certificate(
                session,
                lfdi=ident.lfdi,
                sfdi=ident.sfdi,
                kind=ClientKind.aggregator,
                aggregator_id=agg.id,
                now_s=ctx.now_s(),
            )
    finally:
        ctx.engine.dispose()
    click.echo(f"aggregator {name}: certificate lFDI {ident.lfdi} registered")


admin_group.add_command(token_group)
