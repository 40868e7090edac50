"""`gridshare admin token …`: create, list and revoke operator API tokens.

The token is printed once and only its SHA-256 is stored, so a lost token is revoked and replaced,
never recovered.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from gridshare.process.cli_support import admin_context, data_dir_option

#: Kept literal so `gridshare --help` does not import the store (ApiRole has the same values).
ROLES = ("operator", "viewer")


@click.group("token")
def token_group() -> None:
    """Bearer tokens for the operator API (roles: operator, viewer)."""


@token_group.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What it may do.")
@click.option("--name", default=None, help="Who holds it (shown in the audit log) [default: ROLE-xxxxxx].")
@data_dir_option
def create_token_command(role: str, name: str | None, data_dir: Path | None) -> None:
    """Create a token and print it once (store it now: it cannot be shown again)."""
    from gridshare.server.operator.auth import new_token, token_digest
    from gridshare.store.access_models import ApiRole
    from gridshare.store.db import transaction
    from gridshare.store.queries.access import add_token, token_by_name

    name = name or f"{role}-{secrets.token_hex(3)}"
    if not 1 <= len(name) <= 64:
        raise click.BadParameter("1 to 64 characters", param_hint="--name")
    ctx = admin_context(data_dir)
    token = new_token()
    try:
        with transaction(ctx.sessions) as session:
            if token_by_name(session, name) is not None:
                raise click.ClickException(f"a token named {name!r} exists")
            add_token(
                session, name=name, role=ApiRole(role), token_sha256=token_digest(token), now_s=ctx.now_s()
            )
    finally:
        ctx.engine.dispose()
    click.echo(f"# token {name!r}, role {role} (shown once)", err=True)
    click.echo(token)


@token_group.command("list")
@data_dir_option
def list_tokens_command(data_dir: Path | None) -> None:
    """Names, roles and state of every token (never the tokens themselves)."""
    from gridshare.store.queries.access import list_tokens

    ctx = admin_context(data_dir)
    try:
        with ctx.sessions() as session:
            for t in list_tokens(session):
                state = "revoked" if t.revoked_s is not None else "active"
                click.echo(f"{t.name}\t{t.role}\t{state}")
    finally:
        ctx.engine.dispose()


@token_group.command("revoke")
@click.argument("name")
@data_dir_option
def revoke_token_command(name: str, data_dir: Path | None) -> None:
    """Revoke the token called NAME; requests with it get 401 from now on."""
    from gridshare.store.db import transaction
    from gridshare.store.queries.access import token_by_name

    ctx = admin_context(data_dir)
    try:
        with transaction(ctx.sessions) as session:
            token = token_by_name(session, name)
            if token is None:
                raise click.ClickException(f"no token named {name!r}")
            if token.revoked_s is None:
                token.revoked_s = ctx.now_s()
    finally:
        ctx.engine.dispose()
    click.echo(f"token {name!r} revoked")
