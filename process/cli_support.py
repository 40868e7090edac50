"""What every `gridshare serve|admin` command shares: settings with one-line errors, and the store.

Admin commands open an existing store and never create one: run from the wrong folder they would
otherwise make an empty store there and put a token or an aggregator in it, which the running server
never sees.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gridshare.core.settings import Settings, SettingsError
from gridshare.core.settings import load_settings as settings_from

if TYPE_CHECKING:  # `gridshare --help` should not have to import the store
    from gridshare.server.shared.context import AppContext

F = TypeVar("F", bound=Callable[..., Any])

DATA_DIR_HELP = "Where the SQLite file and dev PKI live [default: ./gridshare-data, or GRIDSHARE_DATA_DIR]."


class SettingsProblem(click.ClickException):
    """A setting or a store that cannot be used: one line, exit status 2 (like a bad option)."""

    exit_code = 2


def load_settings(**overrides: object) -> Settings:
    """The settings for a command; a bad one stops it with one line naming the setting and its source."""
    try:
        return settings_from(**overrides)
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from None


def data_dir_option(func: F) -> F:
    """`--data-dir`, with the same meaning for every command (serve's)."""
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=DATA_DIR_HELP
    )(func)


def admin_context(data_dir: Path | None) -> AppContext:
    """The existing store named by --data-dir (or the settings); a missing one is refused, not created."""
    from sqlalchemy.exc import OperationalError

    from gridshare.server.shared.context import StoreMissing, build_context, describe_store

    settings = load_settings(data_dir=data_dir)
    try:
        return build_context(settings, create=False, schema_log="debug")
    except StoreMissing as exc:
        raise SettingsProblem(str(exc)) from None
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise SettingsProblem(f"cannot open the store at {describe_store(settings)}: {reason}") from None
