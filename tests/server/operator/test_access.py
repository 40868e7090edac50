"""Aggregators, certificate rotation and revocation, and client access on/off, checked over real mTLS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.operator_api import (
    OPERATOR,
    VIEWER,
    OperatorApi,
    assert_field_error,
    register_device,
    running_operator_api,
)
from tests.support.servers import RunningServer


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as running:
        yield running


def _status(server: RunningServer, name: str, path: str = "/edev/0") -> int:
    with server.client(name, validate=False) as c:
        return c.get(path).status_code


def _aggregator_id(api: OperatorApi, name: str) -> int:
    with api.client(VIEWER) as c:
        return next(a["id"] for a in c.get("/aggregators").json()["items"] if a["name"] == name)


def test_aggregators_and_their_certificates(server: RunningServer, api: OperatorApi) -> None:
    agg1 = server.pki.client("aggregator-1")
    agg_id = _aggregator_id(api, "aggregator-1")
    base = f"/aggregators/{agg_id}/certificates"
    new_pem = server.pki.client("device-3").cert_path.read_text()
    with api.client(OPERATOR) as op:
        created = op.post("/aggregators", json={"name": "acme-vpp"})
        assert created.status_code == 201, created.text
        assert op.post("/aggregators", json={"name": "acme-vpp"}).status_code == 409
        assert_field_error(op.post("/aggregators", json={"name": ""}), "name")
        assert op.get("/aggregators/4242").status_code == 404
        assert_field_error(
            op.post(f"/aggregators/{created.json()['id']}/certificates", json={"pem": "/etc/passwd"}), "pem"
        )
        assert [c["lfdi"] for c in op.get(base).json()["items"]] == [agg1.lfdi]
        audited = api.audit_count()

        # rotating to a certificate that is already registered fails as a whole: the old one still works
        taken = server.pki.client("aggregator-2").cert_path.read_text()
        assert op.post(f"{base}/{agg1.lfdi}/rotate", json={"pem": taken}).status_code == 409
        assert _status(server, "aggregator-1") == 200
        assert api.audit_count() == audited

        rotated = op.post(f"{base}/{agg1.lfdi.lower()}/rotate", json={"pem": new_pem})
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["registered"]["lfdi"] == server.pki.client("device-3").lfdi
        assert rotated.json()["revoked"]["revoked_s"] == server.ctx.now_s()
    # the old certificate is refused at once; the new one is the aggregator now
    assert _status(server, "aggregator-1") == 403
    assert _status(server, "device-3") == 200
    with api.client(OPERATOR) as op:
        new_lfdi = rotated.json()["registered"]["lfdi"]
        assert op.post(f"{base}/{new_lfdi}/revoke").status_code == 200
        assert op.post(f"{base}/{new_lfdi}/revoke").status_code == 409
        assert (
            op.post(f"/aggregators/{created.json()['id']}/certificates/{new_lfdi}/revoke").status_code == 404
        )
        assert_field_error(op.post(f"{base}/not-an-lfdi/revoke"), "path", "lfdi")
    assert _status(server, "device-3") == 403
    actions = [e["action"] for e in api.client(VIEWER).get("/audit").json()["items"]]
    assert actions == ["certificate.revoke", "certificate.rotate", "aggregator.create"]


def test_client_access_off_and_on(server: RunningServer, api: OperatorApi) -> None:
    me = server.pki.client("device-1")
    site_id = register_device(server, "device-1")
    never_registered = server.pki.client("device-2")
    with api.client(OPERATOR) as op:
        r = op.put(f"/access/{me.lfdi}", json={"enabled": False})
        assert r.status_code == 200 and r.json()["enabled"] is False, r.text
        assert op.put(f"/access/{never_registered.lfdi}", json={"enabled": False}).json()["kind"] == "device"
    assert _status(server, "device-1", "/edev") == 403
    assert _status(server, "device-1", f"/edev/{site_id}") == 403
    assert _status(server, "device-2", "/dcap") == 403
    with api.client(OPERATOR) as op:
        assert op.put(f"/access/{me.lfdi}", json={"enabled": True}).json()["enabled"] is True
        assert op.get(f"/access/{me.lfdi}").json()["revoked_s"] is None
        assert_field_error(op.put("/access/XYZ", json={"enabled": True}), "path", "lfdi")
        assert_field_error(op.put(f"/access/{me.lfdi}", json={"enabled": "perhaps"}), "enabled")
    assert _status(server, "device-1", f"/edev/{site_id}") == 200
    assert _status(server, "device-2", "/dcap") == 403
