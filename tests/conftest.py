"""Shared fixtures: a dev PKI, a fresh database per test (SQLite and PostgreSQL), and a real mTLS server.

The server runs uvicorn in a thread of the test process on a free loopback port with real TLS, so
tests exercise the certificate path exactly as devices do, and can drive the server's clock. The
builders behind the fixtures are in tests/support/servers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridshare.certs.devpki import DevPki, create_dev_pki
from tests.support.servers import RunningServer, fresh_pg_database, running_server


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"), devices=3, aggregators=2)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new empty database for one test: a SQLite file, or a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gridshare.db'}"
        return
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def server(pki: DevPki, database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(pki, database_url, tmp_path) as running:
        yield running
