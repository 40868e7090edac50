"""The `gridshare` command line: one group, each sub-group owned by the package that does the work."""

from __future__ import annotations

import logging

import click

from gridshare import __version__
from gridshare.core.logs import TEXT_FORMAT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gridshare")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """GridShare: dynamic operating envelopes over IEEE 2030.5 / CSIP-AUS."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=TEXT_FORMAT,
    )
    # Alembic narrates every plugin it loads; an operator needs only our one line about the schema.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # APScheduler logs every job it runs; the engine logs one line per recomputation itself.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _register() -> None:
    """Attach the sub-command groups; each lives next to the code it drives."""
    from gridshare.certs.commands import certs_group

    main.add_command(certs_group)
    from gridshare.envelopes.commands import envelopes_group

    main.add_command(envelopes_group)
    from gridshare.process.commands import admin_group, serve_command

    main.add_command(serve_command)
    main.add_command(admin_group)
    from gridshare.sim.commands import sim_group

    main.add_command(sim_group)
    from gridshare.planning.commands import plan_group

    main.add_command(plan_group)


_register()
