"""Builders every suite shares: a fresh database, a real mTLS device server in a thread, a schema-checked
client. The pytest fixtures that hand these to tests live in tests/conftest.py."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from lxml import etree
from sqlalchemy.orm import Session

from gridshare.certs.devpki import DevPki
from gridshare.core.clock import FixedClock
from gridshare.core.settings import Settings
from gridshare.server.app import create_asgi
from gridshare.server.listener import device_config
from gridshare.server.shared.context import AppContext, build_context
from gridshare.server.shared.fastpath import FastPath
from gridshare.server.tls import server_context
from gridshare.server.wire.xmlio import schema
from gridshare.store.change_feed import wait_until_heard
from gridshare.store.queries.seed import register_dev_aggregators, seed_baseline
from tests.support.bodies import SEP_XML, end_device

PG_URL = os.environ.get("GRIDSHARE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: 2026-11-23T00:00:00Z: tests run on a fixed clock they move themselves.
T0 = 1795392000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database (dropped afterwards); skips, or fails under CI, without a server."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}; .ci/run should have started it")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    name = f"gs_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class RunningServer:
    base_url: str
    ctx: AppContext
    clock: FixedClock
    pki: DevPki
    #: The raw-ASGI front the port serves (server/shared/fastpath.py).
    front: FastPath | None = None

    def client(self, name: str, validate: bool = True) -> httpx.Client:
        """An HTTPS client presenting `name`'s certificate; every XML body it receives is schema-checked."""
        hooks = {"response": [_validate_xml]} if validate else {}
        return httpx.Client(base_url=self.base_url, verify=self.tls(name), event_hooks=hooks, timeout=10)

    def register(self, name: str) -> str:
        """`name` registers its own EndDevice over mTLS, as a device does; returns its href."""
        me = self.pki.client(name)
        with self.client(name) as c:
            r = c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML)
        assert r.status_code == 201, r.text
        return r.headers["location"]

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A store transaction, answered as the product's own writers answer (operator API, recompute):
        once committed *and* heard by this process's change feed. PostgreSQL's NOTIFY arrives a moment
        after the commit; a poll sent before it may be answered from the cache, as designed."""
        with self.ctx.sessions() as session, session.begin():
            yield session
        wait_until_heard(self.ctx.engine)

    def tls(self, name: str | None) -> ssl.SSLContext:
        """A client TLS context trusting the dev CA and presenting `name`'s certificate (None: no cert)."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_path))
        if name is not None:
            cert = self.pki.client(name)
            ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        return ctx


def xml_ok(response: httpx.Response) -> etree._Element:
    """The parsed body of a 200 answer (anything else fails the test with the server's reason)."""
    assert response.status_code == 200, response.text
    return etree.fromstring(response.content)


def _validate_xml(response: httpx.Response) -> None:
    response.read()
    if response.headers.get("content-type", "").startswith("application/sep+xml") and response.content:
        doc = etree.fromstring(response.content)
        validator = schema()
        if not validator.validate(doc):
            raise AssertionError(
                f"schema-invalid body from {response.url}: {validator.error_log.last_error}\n{response.text}"
            )


@contextmanager
def running_server(
    pki: DevPki, database_url: str, tmp_path: Path, **overrides: Any
) -> Iterator[RunningServer]:
    """The device port in a thread, as `gridshare serve` builds it; `overrides` are Settings fields.

    With `behind_proxy=True` it serves plain HTTP (a TLS-terminating proxy's upstream)."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        port=free_port(),
        tls_cert_file=pki.server_cert_path,
        tls_key_file=pki.server_key_path,
        tls_ca_file=pki.ca_path,
        # Notification receivers in tests listen on loopback, which is refused unless allow-listed.
        **({"notification_allowed_networks": ["127.0.0.1/32"]} | overrides),
    )
    clock = FixedClock(T0)
    ctx = build_context(settings, clock)
    seed_baseline(ctx)
    register_dev_aggregators(ctx, pki.aggregators)
    tls = None
    if not settings.behind_proxy:
        tls = server_context(pki.server_cert_path, pki.server_key_path, pki.ca_path)
    front = create_asgi(ctx)
    config = device_config(front, settings, tls, host="127.0.0.1", port=settings.port)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    scheme = "http" if settings.behind_proxy else "https"
    try:
        yield RunningServer(f"{scheme}://127.0.0.1:{settings.port}", ctx, clock, pki, front)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        ctx.engine.dispose()
