"""Every operator API operation, fed generated and deliberately broken input from its own OpenAPI document.

Schemathesis derives valid and invalid requests (wrong types, out-of-range numbers, huge integers,
odd Unicode, missing fields) for each of the ~66 operations. Path identifiers are mostly pointed at
objects that exist (a site, its control, a program, a derate, an aggregator), so bodies reach the
validation and the store instead of stopping at a 404. Two things must hold for every request, on
SQLite and on PostgreSQL (which, unlike SQLite, refuses integers beyond its column types):

- never a server error: an operator gets a 4xx with a reason for anything they can send;
- a refused write leaves nothing behind: no audit entry (every write is audited in its own transaction).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from gridshare.grid.examples import demo_feeder_path
from tests.support.operator_api import (
    OPERATOR,
    OperatorApi,
    first_program_id,
    register_device,
    running_operator_api,
)
from tests.support.servers import RunningServer

DEMO_FILE = demo_feeder_path()
#: Examples per operation (about 1,700 requests per database); GRIDSHARE_FUZZ_EXAMPLES for a deeper run.
EXAMPLES = int(os.environ.get("GRIDSHARE_FUZZ_EXAMPLES", "25"))
#: Operations that take the object away: run last, and never pointed at the seeded objects on purpose.
DESTRUCTIVE = {"DELETE"}


@pytest.fixture
def api(server: RunningServer) -> Iterator[OperatorApi]:
    with running_operator_api(server.ctx) as running:
        yield running


def _seed(server: RunningServer, api: OperatorApi) -> dict[str, Any]:
    """Real objects for the path identifiers: a network, a registered site with a control, a derate."""
    site_id = register_device(server, "device-1")
    program_id = first_program_id(api)
    with api.client(OPERATOR) as c:
        r = c.put("/network", content=DEMO_FILE.read_bytes(), headers={"content-type": "application/yaml"})
        assert r.status_code == 200, r.text
        r = c.post(
            f"/sites/{site_id}/programs/{program_id}/controls",
            json={"start_s": server.ctx.now_s() + 600, "duration_s": 900, "export_limit_w": 1500},
        )
        assert r.status_code == 201, r.text
        control_id = r.json()["id"]
        r = c.post("/derates", json={"asset": "dt-11", "factor": 0.5, "reason": "fuzz"})
        assert r.status_code in (200, 201), r.text
        derate_id = r.json()["id"]
        aggregator_id = c.get("/aggregators").json()["items"][0]["id"]
    return {
        "site_id": site_id,
        "program_id": program_id,
        "control_id": control_id,
        "derate_id": derate_id,
        "aggregator_id": aggregator_id,
        "asset": "dt-11",
        "name": "demo-feeder",  # the network of /networks/{name}/...
    }


def test_no_input_gives_a_server_error_or_a_half_write(server: RunningServer, api: OperatorApi) -> None:
    known = _seed(server, api)
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {api.tokens[OPERATOR]}"}
    problems: list[str] = []

    operations = [result.ok() for result in schema.get_all_operations()]
    # deletions last, so that every other operation meets the seeded objects
    operations.sort(key=lambda op: op.method.upper() in DESTRUCTIVE)
    for operation in operations:
        # valid requests, and requests that break the schema on purpose (what FastAPI must refuse)
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=cases, real_ids=st.booleans())
        def exercise(case: Any, real_ids: bool) -> None:
            if real_ids and case.method.upper() not in DESTRUCTIVE and case.path_parameters:
                case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
            audit_before = api.audit_count()
            response = case.call(headers=headers)
            where = f"{case.method.upper()} {case.formatted_path}"
            if response.status_code >= 500:
                problems.append(f"{where}: HTTP {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400 and api.audit_count() != audit_before:
                problems.append(f"{where}: refused with {response.status_code} but wrote an audit entry")

        exercise()

    assert not problems, "\n".join(problems[:20])
