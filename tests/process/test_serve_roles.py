"""Several `gridshare serve` processes on one store: start-up together, and what each role runs.

Behind a proxy a deployment starts N serving processes and one publisher at the same moment (compose,
systemd). On a fresh PostgreSQL database they used to run the migrations side by side and all but one
crashed; seeding could run twice. The start-up lock makes one process migrate and seed, the others wait.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gridshare.cli import main
from gridshare.store.models import DerProgram, EnvelopePointer, FunctionSetAssignments, NetworkModel
from tests.support.processes import GRIDSHARE, Proc, clean_env, start, wait_until
from tests.support.servers import free_port, fresh_pg_database


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'gridshare.db'}"


def _count(url: str, model: type) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(model)).scalar_one())
    finally:
        engine.dispose()


def _together(url: str, tmp_path: Path) -> None:
    """Three processes with the default roles, started at once on an empty store: all come up, one seed."""
    procs: list[Proc] = []
    ports = [free_port() for _ in range(3)]
    try:
        for i, port in enumerate(ports):
            env = clean_env(
                data_dir=str(tmp_path / "data"),
                database_url=url,
                behind_proxy="true",
                trusted_proxies="127.0.0.1",
                port=str(port),
                operator_port=str(free_port()),
            )
            procs.append(start(f"gridshare-{i}", [str(GRIDSHARE), "serve"], env, tmp_path / "logs", tmp_path))
        for port in ports:
            wait_until(
                lambda port=port: httpx.get(f"http://127.0.0.1:{port}/tm", timeout=2).status_code == 403,
                f"the process on port {port}",
                procs,
            )
        assert _count(url, FunctionSetAssignments) == 1
        assert _count(url, DerProgram) == 1
        assert _count(url, NetworkModel) == 1  # the demo feeder, loaded once
        # and exactly one of them publishes (the lease), so there is one current set, soon
        wait_until(lambda: _count(url, EnvelopePointer) == 1, "a published envelope set", procs)
    finally:
        for proc in procs:
            proc.stop()


# Slow (three full start-ups); the default suite covers the same start through nginx, where two serving
# processes and the publisher start at once on a fresh store (tests/product/test_nginx_proxy.py).
@pytest.mark.slow
def test_three_processes_starting_together_on_fresh_sqlite(tmp_path: Path) -> None:
    _together(_sqlite_url(tmp_path), tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_three_processes_starting_together_on_fresh_postgresql(tmp_path: Path) -> None:
    with fresh_pg_database() as url:
        _together(url, tmp_path)


def test_a_process_with_background_roles_only_publishes_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`--roles publish`: no listener at all, the engine publishes, SIGTERM ends it promptly."""
    url = _sqlite_url(tmp_path)
    device_port, operator_port = free_port(), free_port()
    env = clean_env(data_dir=str(tmp_path / "data"), port=str(device_port), operator_port=str(operator_port))
    proc = start("publisher", [str(GRIDSHARE), "serve", "--roles", "publish"], env, tmp_path, tmp_path)
    try:
        wait_until(lambda: "envelopes published" in proc.log.read_text(), "a publication", [proc])
        for port in (device_port, operator_port):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.select(EnvelopePointer.set_id)).scalar_one() is not None
        engine.dispose()
        started = time.monotonic()
        proc.stop(timeout_s=30)
        assert proc.popen.returncode == 0, proc.tail()
        assert time.monotonic() - started < 30
    finally:
        proc.stop()


def test_an_unknown_role_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRIDSHARE_ROLES", raising=False)
    result = CliRunner().invoke(main, ["serve", "--roles", "serve,publisher", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2  # a bad setting: one line, exit 2 like a bad option (issue 15), no traceback
    assert "setting 'roles" in result.output and "'publish'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
