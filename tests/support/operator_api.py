"""Helpers for the operator API tests: the API on a free loopback port next to the mTLS test server.

The operator server shares the `server` fixture's AppContext (clock, engine, caches), exactly as
`gridshare serve` runs both in one process, so a change made here is checked from a real device.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select

from gridshare.server.operator.auth import new_token, token_digest
from gridshare.server.operator.run import operator_server
from gridshare.server.shared.context import AppContext
from gridshare.store.access_models import ApiRole, AuditEntry
from gridshare.store.db import transaction
from gridshare.store.models import DerControl
from gridshare.store.queries.access import add_token
from tests.support.bodies import SEP_XML, end_device
from tests.support.servers import RunningServer, free_port

OPERATOR, VIEWER = "ops-alice", "viewer-bob"


@dataclass
class OperatorApi:
    base_url: str
    ctx: AppContext
    tokens: dict[str, str]

    def client(self, name: str | None = OPERATOR, token: str | None = None) -> httpx.Client:
        """A client sending the named token (None: no Authorization header at all)."""
        secret = token if token is not None else self.tokens.get(name or "")
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)

    def audit_count(self) -> int:
        with self.ctx.sessions() as s:
            return int(s.execute(select(func.count(AuditEntry.id))).scalar_one())

    def control_count(self) -> int:
        with self.ctx.sessions() as s:
            return int(s.execute(select(func.count(DerControl.id))).scalar_one())


@contextmanager
def running_operator_api(ctx: AppContext) -> Iterator[OperatorApi]:
    tokens = {OPERATOR: new_token(), VIEWER: new_token()}
    with transaction(ctx.sessions) as s:
        for name, role in ((OPERATOR, ApiRole.operator), (VIEWER, ApiRole.viewer)):
            add_token(s, name=name, role=role, token_sha256=token_digest(tokens[name]), now_s=ctx.now_s())
    port = free_port()
    uv = operator_server(ctx, "127.0.0.1", port)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("operator API did not start")
        time.sleep(0.02)
    try:
        yield OperatorApi(f"http://127.0.0.1:{port}", ctx, tokens)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def register_device(server: RunningServer, name: str) -> int:
    """The device registers its own EndDevice over mTLS; returns the site id."""
    me = server.pki.client(name)
    with server.client(name) as c:
        r = c.post("/edev", content=end_device(me.sfdi, me.lfdi), headers=SEP_XML)
    assert r.status_code == 201, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def first_program_id(api: OperatorApi) -> int:
    with api.client(VIEWER) as c:
        return int(c.get("/programs").json()["items"][0]["id"])


def assert_field_error(r: httpx.Response, *loc_tail: Any) -> None:
    """422 whose body names the field (the end of some error's `loc`) and gives a reason."""
    assert r.status_code == 422, (r.status_code, r.text)
    errors = r.json()["detail"]
    tails = [e["loc"][-len(loc_tail) :] for e in errors]
    assert list(loc_tail) in tails, (loc_tail, errors)
    assert all(e["msg"] for e in errors)


def console_login(api: OperatorApi, name: str) -> tuple[httpx.Client, str]:
    """A browser-like client logged in to the console as `name`, and its CSRF token."""
    c = httpx.Client(base_url=api.base_url, timeout=10)
    form = c.get("/console/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)[1]  # type: ignore[index]
    r = c.post("/console/login", data={"csrf": csrf, "token": api.tokens[name], "next": "/console/"})
    assert r.status_code == 303 and r.headers["location"] == "/console/", r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = c.get("/console/").text
    return c, re.search(r'name="csrf-token" content="([^"]+)"', page)[1]  # type: ignore[index]
