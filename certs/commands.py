"""`gridshare certs ...`: create the development PKI and inspect device identities."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from gridshare.certs.devpki import ClientCert, DevPki, create_dev_pki, issue_client_certificate
from gridshare.certs.identity import DeviceIdentity, load_certificates


def _console() -> Console:
    """A console that never truncates lFDIs when output is piped (rich would assume 80 columns)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))
    return console


def _display_path(path: Path, base: Path) -> str:
    """Show paths relative to the PKI directory (already printed) to keep the table narrow."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _clients_table(pki: DevPki, clients: list[ClientCert]) -> Table:
    table = Table(title=f"Client certificates in {pki.directory}")
    table.add_column("Name", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("lFDI", no_wrap=True, min_width=40)
    table.add_column("sFDI", no_wrap=True, justify="right", min_width=12)
    table.add_column("Cert", overflow="fold")
    table.add_column("Key", overflow="fold")
    for c in clients:
        table.add_row(
            c.name,
            c.kind,
            c.lfdi,
            str(c.sfdi),
            _display_path(c.cert_path, pki.directory),
            _display_path(c.key_path, pki.directory),
        )
    return table


@click.group(name="certs")
def certs_group() -> None:
    """Development PKI (SERCA -> MICA -> device) and IEEE 2030.5 lFDI/sFDI tools."""


@certs_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--devices", type=click.IntRange(min=0), default=2, show_default=True, help="Device certs.")
@click.option(
    "--aggregators", type=click.IntRange(min=0), default=1, show_default=True, help="Aggregator certs."
)
@click.option("--force", is_flag=True, help="Overwrite an existing PKI (all lFDIs change).")
def init_command(directory: Path, devices: int, aggregators: int, force: bool) -> None:
    """Create a development PKI in DIRECTORY and list the client identities."""
    try:
        pki = create_dev_pki(directory, devices=devices, aggregators=aggregators, force=force)
    except FileExistsError:
        raise click.ClickException(
            f"a dev PKI already exists in {directory}; pass --force to regenerate it"
        ) from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot create a dev PKI in {directory}: {exc}") from None
    console = _console()
    console.print(f"Trust anchor (CA):  {pki.ca_path}")
    console.print(f"Server cert chain:  {pki.server_cert_path}")
    console.print(f"Server key:         {pki.server_key_path}")
    console.print(f"Client index:       {pki.directory / 'clients.json'}")
    console.print(_clients_table(pki, pki.clients))


@certs_group.command("issue")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["device", "aggregator"]),
    default="device",
    show_default=True,
    help="Device (no expiry) or aggregator certificate.",
)
def issue_command(directory: Path, name: str, kind: str) -> None:
    """Issue one more client certificate NAME from the dev PKI in DIRECTORY."""
    try:
        client = issue_client_certificate(directory, name, kind)  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Issued {client.kind} {client.name}")
    click.echo(f"lFDI: {client.lfdi}")
    click.echo(f"sFDI: {client.sfdi}")
    click.echo(f"cert: {client.cert_path}")
    click.echo(f"key:  {client.key_path}")


@certs_group.command("lfdi")
@click.argument("cert", type=click.Path(dir_okay=False, path_type=Path))
def lfdi_command(cert: Path) -> None:
    """Print the lFDI and sFDI of the leaf (first) certificate in CERT (PEM or DER)."""
    try:
        leaf = load_certificates(cert)[0]
    except FileNotFoundError:
        raise click.ClickException(f"{cert}: no such file") from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{cert}: not a readable X.509 certificate ({exc})") from None
    identity = DeviceIdentity.from_certificate(leaf)
    click.echo(f"lFDI: {identity.lfdi}")
    click.echo(f"sFDI: {identity.sfdi}")
    click.echo(f"subject: {leaf.subject.rfc4514_string()}")
