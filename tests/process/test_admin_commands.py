"""`gridshare admin …` works on the store --data-dir names and never makes a new one by accident."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner

from gridshare.certs.devpki import DevPki
from gridshare.cli import main
from gridshare.store.db import alembic_config, make_engine, schema_revision, store_exists, upgrade


@pytest.fixture(autouse=True)
def _no_settings_from_the_caller(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper() in ("GRIDSHARE_DATA_DIR", "GRIDSHARE_DATABASE_URL", "GRIDSHARE_CONFIG"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "args",
    [
        ["admin", "token", "list"],
        ["admin", "token", "create", "--role", "operator"],
        ["admin", "token", "revoke", "someone"],
        ["admin", "add-aggregator", "acme", "{cert}"],
    ],
)
def test_admin_commands_refuse_to_create_a_store(tmp_path: Path, args: list[str], pki: DevPki) -> None:
    argv = [a.format(cert=pki.aggregators[0].cert_path) for a in args]
    code, output = _cli(*argv)
    assert code == 2, output
    assert f"no GridShare store at {tmp_path / 'gridshare-data' / 'gridshare.db'}" in output
    assert "gridshare serve" in output and "Traceback" not in output
    assert not (tmp_path / "gridshare-data").exists()  # not even the folder
    code, output = _cli(*argv, "--data-dir", str(tmp_path / "elsewhere"))
    assert code == 2 and str(tmp_path / "elsewhere" / "gridshare.db") in output
    assert not (tmp_path / "elsewhere").exists()


def test_admin_commands_use_the_store_data_dir_names(tmp_path: Path, pki: DevPki) -> None:
    data = tmp_path / "site-a"
    code, output = _cli("admin", "init", "--data-dir", str(data))
    assert code == 0 and f"created a new store: {data / 'gridshare.db'}" in output, output
    code, output = _cli("admin", "init", "--data-dir", str(data))
    assert code == 0 and "store is ready" in output
    code, output = _cli(
        "admin", "token", "create", "--role", "viewer", "--name", "nina", "--data-dir", str(data)
    )
    assert code == 0, output
    code, output = _cli(
        "admin", "add-aggregator", "acme", str(pki.aggregators[0].cert_path), "--data-dir", str(data)
    )
    assert code == 0 and "aggregator acme" in output, output
    code, output = _cli("admin", "token", "list", "--data-dir", str(data))
    assert code == 0 and "nina\tviewer\tactive" in output
    code, output = _cli("admin", "token", "revoke", "nina", "--data-dir", str(data))
    assert code == 0, output
    assert "nina\tviewer\trevoked" in _cli("admin", "token", "list", "--data-dir", str(data))[1]
    assert not (tmp_path / "gridshare-data").exists()  # nothing went to the current folder


def test_an_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHARE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    code, output = _cli("admin", "token", "list")
    assert code == 2 and output.startswith("Error: cannot open the store at postgresql+psycopg://"), output
    assert "Traceback" not in output


def test_the_schema_upgrade_says_what_it_did(database_url: str) -> None:
    """Created on an empty database, upgraded from an older revision, current when nothing was to do."""
    assert not store_exists(database_url)
    engine = make_engine(database_url)
    try:
        created = upgrade(engine)
        head = schema_revision(engine)
        assert head is not None and store_exists(database_url)
        assert (created.before, created.after) == (None, head)
        assert created.describe() == f"created the database schema (revision {head})"
        current = upgrade(engine)
        assert current.describe() == f"database schema is current (revision {head})"
        # an older store: one revision down, then upgraded
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "-1")
        older = schema_revision(engine)
        assert older is not None and older != head
        upgraded = upgrade(engine)
        assert upgraded.describe() == f"upgraded the database schema from revision {older} to {head}"
    finally:
        engine.dispose()
