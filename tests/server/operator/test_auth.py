"""Operator API authentication and roles, the audit log of accepted writes, and the token command."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi import HTTPException
from sqlalchemy import func, select

from gridshare.cli import main
from gridshare.core.clock import FixedClock
from gridshare.core.settings import Settings
from gridshare.server.operator.audit import Writer
from gridshare.server.operator.auth import Caller, token_digest
from gridshare.server.shared.context import build_context
from gridshare.store.access_models import ApiRole, ApiToken, AuditEntry
from gridshare.store.db import make_engine, publication_value, session_factory, transaction
from gridshare.store.models import FunctionSetAssignments
from gridshare.store.queries.access import token_by_digest, token_by_name
from tests.support.operator_api import OPERATOR, VIEWER, OperatorApi, running_operator_api
from tests.support.servers import T0, RunningServer


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as running:
        yield running


def test_tokens_roles_and_audit(server: RunningServer, api: OperatorApi) -> None:
    with api.client(None) as anonymous:
        r = anonymous.get("/sites")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/sites", headers={"Authorization": "Basic b3A6b3A="}).status_code == 401
    with api.client(token="not-a-token") as wrong:
        r = wrong.post("/fsas", json={"description": "x"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    with api.client(VIEWER) as viewer:
        assert viewer.get("/sites").status_code == 200
        r = viewer.post("/fsas", json={"description": "viewer may not"})
        assert r.status_code == 403, r.text
        assert viewer.patch("/rates", json={"poll_rates_s": {"derp": 5}}).status_code == 403
    with api.client(OPERATOR) as operator:
        # refused: a bad body from an operator is a 422 and is not audited either
        assert operator.post("/fsas", json={"description": "x" * 33}).status_code == 422
        assert api.audit_count() == 0
        r = operator.post("/fsas", json={"description": "north feeder"})
        assert r.status_code == 201, r.text
        fsa_id = r.json()["id"]
    with api.client(VIEWER) as viewer:
        entries = viewer.get("/audit").json()
    assert entries["total"] == 1
    entry = entries["items"][0]
    assert (entry["actor"], entry["role"], entry["method"], entry["path"]) == (
        OPERATOR,
        "operator",
        "POST",
        "/fsas",
    )
    assert (entry["action"], entry["target"]) == ("fsa.create", f"fsa:{fsa_id}")
    assert entry["at_s"] == server.ctx.now_s() and entry["details"] == {"description": "north feeder"}

    # a revoked token stops working on its next request
    with transaction(server.ctx.sessions) as s:
        token_by_name(s, OPERATOR).revoked_s = server.ctx.now_s()
    with api.client(OPERATOR) as operator:
        assert operator.get("/sites").status_code == 401
        assert operator.post("/fsas", json={}).status_code == 401
    assert api.audit_count() == 1


def test_openapi_is_on_the_operator_port_only(server: RunningServer, api: OperatorApi) -> None:
    with api.client(None) as c:
        spec = c.get("/openapi.json").json()
        assert "/sites/{site_id}/programs/{program_id}/controls" in spec["paths"]
        assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
        assert c.get("/docs").status_code == 200
    with server.client("device-1", validate=False) as device:
        for path in ("/openapi.json", "/docs", "/aggregators", "/audit"):
            assert device.get(path).status_code == 404, path


def test_a_failed_write_leaves_neither_change_nor_audit(database_url: str, tmp_path) -> None:
    ctx = build_context(Settings(data_dir=tmp_path, database_url=database_url), FixedClock(T0))
    try:
        w = Writer(ctx, Caller(OPERATOR, ApiRole.operator), "POST", "/fsas")
        with pytest.raises(HTTPException), w.transaction("fsa.create") as change:
            change.session.add(FunctionSetAssignments(mrid="F" * 32, description="half", changed_s=T0))
            change.session.flush()
            raise HTTPException(409, "a late refusal")
        with ctx.sessions() as s:
            assert s.execute(select(func.count(FunctionSetAssignments.id))).scalar_one() == 0
            assert s.execute(select(func.count(AuditEntry.id))).scalar_one() == 0
            generation = publication_value(s)
        with w.transaction("fsa.create") as change:
            change.session.add(FunctionSetAssignments(mrid="F" * 32, description="whole", changed_s=T0))
        with ctx.sessions() as s:
            assert s.execute(select(func.count(AuditEntry.id))).scalar_one() == 1
            assert publication_value(s) > generation
    finally:
        ctx.engine.dispose()


def test_token_create_command_prints_a_token_stored_hashed(database_url: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRIDSHARE_DATABASE_URL", database_url)
    monkeypatch.setenv("GRIDSHARE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    # admin commands open an existing store only (issue 15); `admin init` makes it, as `serve` would
    assert runner.invoke(main, ["admin", "init"]).exit_code == 0
    result = runner.invoke(main, ["admin", "token", "create", "--role", "viewer", "--name", "nina"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert len(token) >= 40
    again = runner.invoke(main, ["admin", "token", "create", "--role", "operator", "--name", "nina"])
    assert again.exit_code != 0 and "exists" in again.output
    assert runner.invoke(main, ["admin", "token", "create", "--role", "root"]).exit_code != 0
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as s:
            stored = token_by_digest(s, token_digest(token))
            assert stored is not None and stored.name == "nina" and stored.role is ApiRole.viewer
            assert token not in [t.token_sha256 for t in s.execute(select(ApiToken)).scalars()]
    finally:
        engine.dispose()
    listed = runner.invoke(main, ["admin", "token", "list"])
    assert "nina\tviewer\tactive" in listed.stdout
    assert runner.invoke(main, ["admin", "token", "revoke", "nina"]).exit_code == 0
