"""`gridshare serve` and `gridshare admin …`: run the endpoint and manage who may connect."""

from __future__ import annotations

from pathlib import Path

import click

from gridshare.certs.identity import DeviceIdentity, load_certificates
from gridshare.core.settings import Settings, SettingsError
from gridshare.core.settings import load_settings as settings_from
from gridshare.server.operator.commands import token_group


class SettingsProblem(click.ClickException):
    """A setting that cannot be used: one line, exit status 2 (like a bad option)."""

    exit_code = 2


def load_settings(**overrides: object) -> Settings:
    """The settings for a command; a bad one stops it with one line naming the setting and its source."""
    try:
        return settings_from(**overrides)
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from None


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
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the SQLite file and dev PKI live [default: ./gridshare-data].",
)
def serve_command(host: str | None, port: int | None, workers: int, data_dir: Path | None) -> None:
    """Serve the CSIP-AUS endpoint over mutual TLS (https://127.0.0.1:8443/dcap by default).

    The store is GRIDSHARE_DATABASE_URL (default: SQLite in the data dir); its schema is upgraded on
    start. Without configured TLS files a development PKI is generated in DATA_DIR/pki on first start.
    """
    from gridshare.server.run import serve

    serve(load_settings(host=host, port=port, data_dir=data_dir), workers=workers)


@click.group("admin")
def admin_group() -> None:
    """Manage aggregators and their client certificates."""


@admin_group.command("add-aggregator")
@click.argument("name")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def add_aggregator_command(name: str, cert: Path) -> None:
    """Register CERT (PEM, leaf first) as a client certificate of aggregator NAME."""
    from gridshare.server.bootstrap import build_context
    from gridshare.store.db import transaction
    from gridshare.store.models import ClientKind
    from gridshare.store.queries.identity import add_aggregator, register_certificate

    try:
        leaf = load_certificates(cert)[0]
    except ValueError as exc:
        raise click.ClickException(f"{cert}: {exc}") from None
    ident = DeviceIdentity.from_certificate(leaf)
    ctx = build_context(load_settings())
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
    click.echo(f"aggregator {name}: certificate lFDI {ident.lfdi} registered")


admin_group.add_command(token_group)
