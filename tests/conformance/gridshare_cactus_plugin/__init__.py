"""cactus-client admin plugin for GridShare: every admin instruction becomes operator API calls.

Registered under the entry-point group `cactus_client.admin`. It talks to the operator API over HTTP
with a bearer token and never touches the database:

    GRIDSHARE_OPERATOR_URL    base URL of the operator API (default http://127.0.0.1:8080)
    GRIDSHARE_OPERATOR_TOKEN  an operator-role token (`gridshare admin token create --role operator`),
                              or GRIDSHARE_OPERATOR_TOKEN_FILE naming a file that holds one

How the instructions map onto GridShare (whose FSAs and DERPrograms are server-wide, and whose
DERControls and DefaultDERControls can be per site):

- a client's EndDevice is the site with the client's configured lFDI: a device's own, or for an
  aggregator client one owned by the aggregator its certificate belongs to;
- `ensure-fsa` annotations bind, in order of first use, to the 1st, 2nd, ... FSA (created if missing);
  `ensure-der-program` finds or creates the program of that primacy in the bound FSA;
- controls and defaults go to the client's site in the program chosen by `primacy`, else the program
  last ensured, else the first program of the first FSA;
- every test starts from a clean slate: `admin_setup` deletes the test clients' EndDevices (with their
  controls, defaults and mirrors), re-enables their certificates, deletes the aggregator's
  subscriptions, drops the FSAs and programs earlier tests created and removes run-time rate
  overrides. `admin_teardown` does the same, so a run leaves the server as it found it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cactus_client.admin import hookimpl
from cactus_client.model.context import AdminContext
from cactus_client.model.execution import ActionResult
from cactus_client.sep2 import lfdi_from_cert_file
from cactus_test_definitions.server.admin_instructions import AdminInstruction, AdminInstructionType
from cactus_test_definitions.server.test_procedures import ClientType

log = logging.getLogger(__name__)

#: FSAs and programs this plugin creates carry this description prefix, so a later setup can find them.
MARK = "cactus "
#: Duration of an "active" control when the instruction gives none: longer than any procedure step.
ACTIVE_DURATION_S = 3600
#: A "scheduled" control without an offset starts this long after the last one queued (or now).
SCHEDULE_GAP_S = 60
SCHEDULED_DURATION_S = 60
#: Ask for Responses (bit 0 received, bit 1 specific response), as a CSIP-AUS utility does.
RESPONSE_REQUIRED = 3
#: Longest wait, after a step's instructions in a procedure that subscribes, for the server to report
#: that every change is in its notification outbox and nothing is about to be sent.
NOTIFY_WAIT_S = float(os.environ.get("GRIDSHARE_CACTUS_NOTIFY_WAIT_S", "15"))

POLL_RESOURCES = {
    "DeviceCapability": "dcap",
    "EndDeviceList": "edev",
    "EndDevice": "edev",
    "FunctionSetAssignmentsList": "fsa",
    "FunctionSetAssignments": "fsa",
    "DERProgramList": "derp",
    "DERProgram": "derp",
    "DERList": "der",
    "DER": "der",
    "MirrorUsagePointList": "mup",
    "MirrorUsagePoint": "mup",
}

CONTROL_FIELDS = {
    "opModExpLimW": "export_limit_w",
    "opModImpLimW": "import_limit_w",
    "opModGenLimW": "generation_limit_w",
    "opModLoadLimW": "load_limit_w",
    "opModConnect": "connect",
    "opModEnergize": "energize",
    "opModFixedW": "fixed_w_pct_hundredths",
    "rampTms": "ramp_tms_hundredths_s",
}


class OperatorError(RuntimeError):
    pass


def _token() -> str:
    token = os.environ.get("GRIDSHARE_OPERATOR_TOKEN", "").strip()
    if not token and os.environ.get("GRIDSHARE_OPERATOR_TOKEN_FILE"):
        token = Path(os.environ["GRIDSHARE_OPERATOR_TOKEN_FILE"]).read_text().strip()
    if not token:
        raise OperatorError(
            "set GRIDSHARE_OPERATOR_TOKEN (or GRIDSHARE_OPERATOR_TOKEN_FILE) to an operator token"
        )
    return token


class Operator:
    """A thin synchronous-looking async client for the operator API; non-2xx answers raise with the body."""

    def __init__(self) -> None:
        base = os.environ.get("GRIDSHARE_OPERATOR_URL", "http://127.0.0.1:8080").rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {_token()}"}, timeout=30.0
        )

    async def call(self, method: str, path: str, json: Any = None, ok404: bool = False) -> Any:
        response = await self.client.request(method, path, json=json)
        log.info("[gridshare] %s %s -> %d", method, path, response.status_code)
        if ok404 and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise OperatorError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def items(self, path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            sep = "&" if "?" in path else "?"
            page = await self.call("GET", f"{path}{sep}start={len(out)}&limit=500")
            out.extend(page["items"])
            if not page["items"] or len(out) >= page["total"]:
                return out

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass
class TestState:
    fsa_by_annotation: dict[str, int] = field(default_factory=dict)
    current_program: int | None = None
    schedule_end_s: int = 0
    created_controls: list[tuple[int, int, int]] = field(default_factory=list)  # site, program, control


class GridSharePlugin:
    def __init__(self) -> None:
        self.state = TestState()
        self._aggregator_of_cert: dict[str, int] = {}
        self._fired: dict[int, int] = {}

    # --- hooks ---------------------------------------------------------------------------------------------

    @hookimpl
    async def admin_setup(self, context: AdminContext) -> ActionResult:
        self.state = TestState()
        try:
            await self._clean_slate(context)
        except Exception as exc:
            log.exception("gridshare admin setup failed")
            return ActionResult.failed(f"GridShare admin setup failed: {exc}")
        return ActionResult.done()

    @hookimpl
    async def admin_teardown(self, context: AdminContext) -> ActionResult:
        try:
            await self._clean_slate(context)
        except Exception as exc:
            log.exception("gridshare admin teardown failed")
            return ActionResult.failed(f"GridShare admin teardown failed: {exc}")
        return ActionResult.done()

    @hookimpl
    async def admin_instruction(
        self, instruction: AdminInstruction, step: Any, context: AdminContext
    ) -> ActionResult | None:
        handler = HANDLERS.get(instruction.type)
        if handler is None:
            return None
        api = Operator()
        try:
            await handler(self, api, instruction, context)
            await self._settle(api, step, context)
        finally:
            await api.aclose()
        return ActionResult.done()

    async def _settle(self, api: Operator, step: Any, context: AdminContext) -> None:
        """After the last instruction of a step in a procedure with subscriptions, wait until the server
        says its notifications are out: the client collects them right after the instructions, while
        the server's notifier works asynchronously (as it must: a change is not the subscriber's call)."""
        count = self._fired.get(id(step), 0) + 1
        self._fired[id(step)] = count
        if count < len(step.source.admin_instructions or []) or not _subscribes(context):
            return
        self._fired.pop(id(step), None)
        deadline = time.monotonic() + NOTIFY_WAIT_S
        while True:
            status = await api.call("GET", "/notifications/status")
            if status["caught_up"]:
                log.info("[gridshare] notifications caught up: %s", status)
                return
            if time.monotonic() > deadline:
                log.warning("[gridshare] notifications not caught up after %.0f s: %s", NOTIFY_WAIT_S, status)
                return
            await asyncio.sleep(0.05)

    # --- helpers -------------------------------------------------------------------------------------------

    async def _clean_slate(self, context: AdminContext) -> None:
        api = Operator()
        try:
            for client in context.client_configs.values():
                site = await self._find_site(api, client)
                if site is not None:
                    await api.call("DELETE", f"/sites/{site['id']}")
                cert_lfdi = lfdi_from_cert_file(client.certificate_file)
                access = await api.call("GET", f"/access/{cert_lfdi}")
                if not access["enabled"]:
                    await api.call("PUT", f"/access/{cert_lfdi}", {"enabled": True})
                if client.type == ClientType.AGGREGATOR:
                    # an earlier procedure's subscriptions point at webhooks that no longer exist
                    aggregator_id = await self._aggregator_id(api, client)
                    for sub in await api.items(f"/subscriptions?aggregator_id={aggregator_id}"):
                        await api.call("DELETE", f"/subscriptions/{sub['id']}", ok404=True)
            for program in await api.items("/programs"):
                if program["description"].startswith(MARK):
                    await api.call("DELETE", f"/programs/{program['id']}")
            for fsa in await api.items("/fsas"):
                if fsa["description"].startswith(MARK):
                    await api.call("DELETE", f"/fsas/{fsa['id']}")
            rates = await api.call("GET", "/rates")
            if rates["overridden"]:
                patch: dict[str, Any] = {
                    "poll_rates_s": {k: None for k in rates["overridden"] if k != "mup_post_rate_s"}
                }
                if "mup_post_rate_s" in rates["overridden"]:
                    patch["mup_post_rate_s"] = None
                await api.call("PATCH", "/rates", patch)
        finally:
            await api.aclose()

    async def _aggregator_id(self, api: Operator, client: Any) -> int:
        cert_lfdi = lfdi_from_cert_file(client.certificate_file)
        if cert_lfdi not in self._aggregator_of_cert:
            for cert in await api.items("/certificates"):
                if cert["lfdi"].upper() == cert_lfdi and cert["aggregator_id"] is not None:
                    self._aggregator_of_cert[cert_lfdi] = cert["aggregator_id"]
                    break
            else:
                raise OperatorError(
                    f"aggregator certificate {cert_lfdi} of client {client.id} is not registered"
                )
        return self._aggregator_of_cert[cert_lfdi]

    async def _find_site(self, api: Operator, client: Any) -> dict[str, Any] | None:
        if client.type == ClientType.AGGREGATOR:
            agg = await self._aggregator_id(api, client)
            sites = await api.items(f"/sites?aggregator_id={agg}")
        else:
            agg = None
            sites = await api.items("/sites")
        lfdi = client.lfdi.upper()
        for site in sites:
            if site["lfdi"].upper() == lfdi and site["aggregator_id"] == agg:
                return site
        return None

    async def _site(self, api: Operator, client: Any) -> dict[str, Any]:
        site = await self._find_site(api, client)
        if site is None:
            site = await self._register(api, client)
        return site

    async def _register(self, api: Operator, client: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "lfdi": client.lfdi,
            "sfdi": client.sfdi,
            "registration_pin": client.pin,
        }
        if client.type == ClientType.AGGREGATOR:
            body["aggregator_id"] = await self._aggregator_id(api, client)
        return await api.call("POST", "/sites", body)

    async def _fsa(self, api: Operator, annotation: str | None) -> int:
        """The FSA an annotation names: the n-th FSA for the n-th annotation of this test."""
        if annotation is None:
            fsas = await api.items("/fsas")
            if fsas:
                return fsas[0]["id"]
            annotation = "default"
        if annotation not in self.state.fsa_by_annotation:
            index = len(self.state.fsa_by_annotation)
            fsas = await api.items("/fsas")
            while len(fsas) <= index:
                fsas.append(await api.call("POST", "/fsas", {"description": f"{MARK}{annotation}"[:32]}))
            self.state.fsa_by_annotation[annotation] = fsas[index]["id"]
        return self.state.fsa_by_annotation[annotation]

    async def _program(self, api: Operator, primacy: int | None) -> int:
        """The program for a control or default: by primacy, else the last ensured, else the first."""
        if primacy is not None:
            programs = await api.items("/programs")  # primacy, then id
            mine = [p for p in programs if p["fsa_id"] in self.state.fsa_by_annotation.values()]
            for p in mine + programs:
                if p["primacy"] == primacy:
                    return p["id"]
            fsa_id = await self._fsa(api, None)
            created = await api.call(
                "POST",
                "/programs",
                {"fsa_id": fsa_id, "primacy": primacy, "description": f"{MARK}p{primacy}"},
            )
            return created["id"]
        if self.state.current_program is not None:
            return self.state.current_program
        fsa_id = await self._fsa(api, None)
        programs = await api.items(f"/programs?fsa_id={fsa_id}")
        if programs:
            return programs[0]["id"]
        created = await api.call(
            "POST", "/programs", {"fsa_id": fsa_id, "primacy": 1, "description": f"{MARK}p1"}
        )
        return created["id"]


# --- instruction handlers --------------------------------------------------------------------------------


def _subscribes(context: AdminContext) -> bool:
    return any(
        getattr(getattr(step, "action", None), "type", None) == "create-subscription"
        for step in context.test_procedure.steps
    )


def _client(context: AdminContext, instruction: AdminInstruction) -> Any:
    return context.client_config_for(instruction.client)


async def ensure_end_device(
    p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext
) -> None:
    client = _client(ctx, ins)
    site = await p._find_site(api, client)
    if ins.parameters.get("registered", True):
        if site is None:
            site = await p._register(api, client)
        if not site["enabled"]:
            await api.call("PATCH", f"/sites/{site['id']}", {"enabled": True})
        # Every site has DER 1 with capability, settings and status links; the Registration link too.
    elif site is not None:
        await api.call("DELETE", f"/sites/{site['id']}")


async def ensure_mup_list_empty(
    p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext
) -> None:
    for client in ctx.client_configs.values():
        site = await p._find_site(api, client)
        if site is not None:
            await api.call("DELETE", f"/sites/{site['id']}/mirror-usage-points")


async def ensure_fsa(p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext) -> None:
    await p._fsa(api, ins.parameters.get("annotation") or "default")


async def ensure_der_program(
    p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext
) -> None:
    fsa_id = await p._fsa(api, ins.parameters.get("fsa_annotation") or "default")
    primacy = ins.parameters.get("primacy")
    programs = await api.items(f"/programs?fsa_id={fsa_id}")
    chosen = next((x for x in programs if primacy is None or x["primacy"] == primacy), None)
    if chosen is None:
        chosen = await api.call(
            "POST",
            "/programs",
            {"fsa_id": fsa_id, "primacy": 1 if primacy is None else primacy, "description": f"{MARK}program"},
        )
    p.state.current_program = chosen["id"]


async def ensure_der_control_list(
    p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext
) -> None:
    # Every DERProgram links its DERControlList, and aggregators may subscribe to it; the client needs
    # an EndDevice to see it.
    await p._site(api, _client(ctx, ins))
    await p._program(api, None)


def _values(params: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, target in CONTROL_FIELDS.items():
        if params.get(name) is None:
            continue
        value = params[name]
        if target in ("connect", "energize"):
            value = bool(value)
        elif target in ("fixed_w_pct_hundredths", "ramp_tms_hundredths_s"):
            value = int(value)
        else:
            value = float(value)
        values[target] = value
    return values


async def create_der_control(
    p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext
) -> None:
    params = ins.parameters
    site = await p._site(api, _client(ctx, ins))
    program_id = await p._program(api, params.get("primacy"))
    now_s = int(time.time())
    status = params.get("status", "active")
    body: dict[str, Any] = _values(params)
    offset = params.get("start_offset_seconds")
    if status == "scheduled":
        duration = int(params.get("duration_seconds") or SCHEDULED_DURATION_S)
        if offset is not None:
            start = now_s + int(offset)
        else:
            start = max(now_s + SCHEDULE_GAP_S, p.state.schedule_end_s)
        p.state.schedule_end_s = max(p.state.schedule_end_s, start + duration)
        body["start_s"] = start
    else:
        duration = int(params.get("duration_seconds") or ACTIVE_DURATION_S)
        if offset is not None:
            body["start_s"] = now_s + int(offset)
    body["duration_s"] = duration
    if params.get("randomizeStart_seconds") is not None:
        body["randomize_start_s"] = int(params["randomizeStart_seconds"])
    body["response_required"] = RESPONSE_REQUIRED
    control = await api.call("POST", f"/sites/{site['id']}/programs/{program_id}/controls", body)
    p.state.created_controls.append((site["id"], program_id, control["id"]))


async def create_default_der_control(
    p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext
) -> None:
    params = ins.parameters
    site = await p._site(api, _client(ctx, ins))
    program_id = await p._program(api, params.get("primacy"))
    body = _values(params)
    if params.get("setGradW") is not None:
        body["set_grad_w_hundredths"] = int(params["setGradW"])
    await api.call("PUT", f"/sites/{site['id']}/programs/{program_id}/default-control", body)


async def clear_der_controls(
    p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext
) -> None:
    site = await p._site(api, _client(ctx, ins))
    if ins.parameters.get("all"):
        for program in await api.items("/programs"):
            await api.call("POST", f"/sites/{site['id']}/programs/{program['id']}/controls/cancel-all")
        return
    # The most recent control this test created that has not ended or been cancelled.
    for site_id, program_id, control_id in reversed(p.state.created_controls):
        path = f"/sites/{site_id}/programs/{program_id}/controls/{control_id}"
        control = await api.call("GET", path, ok404=True)
        if control is not None and control["status"] in ("scheduled", "active", "superseded"):
            await api.call("POST", f"{path}/cancel")
            return


async def set_poll_rate(p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext) -> None:
    resource = str(ins.parameters["resource"])
    key = POLL_RESOURCES.get(resource)
    if key is None:
        raise OperatorError(f"GridShare has no poll rate for {resource}")
    await api.call("PATCH", "/rates", {"poll_rates_s": {key: int(ins.parameters["rate_seconds"])}})


async def set_post_rate(p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext) -> None:
    resource = str(ins.parameters["resource"])
    if resource not in ("MirrorUsagePoint", "MirrorUsagePointList"):
        raise OperatorError(f"GridShare has no post rate for {resource}")
    await api.call("PATCH", "/rates", {"mup_post_rate_s": int(ins.parameters["rate_seconds"])})


async def set_client_access(
    p: GridSharePlugin, api: Operator, ins: AdminInstruction, ctx: AdminContext
) -> None:
    client = _client(ctx, ins)
    cert_lfdi = lfdi_from_cert_file(client.certificate_file)
    await api.call("PUT", f"/access/{cert_lfdi}", {"enabled": bool(ins.parameters["granted"])})


HANDLERS = {
    AdminInstructionType.ENSURE_END_DEVICE: ensure_end_device,
    AdminInstructionType.ENSURE_MUP_LIST_EMPTY: ensure_mup_list_empty,
    AdminInstructionType.ENSURE_FSA: ensure_fsa,
    AdminInstructionType.ENSURE_DER_PROGRAM: ensure_der_program,
    AdminInstructionType.ENSURE_DER_CONTROL_LIST: ensure_der_control_list,
    AdminInstructionType.CREATE_DER_CONTROL: create_der_control,
    AdminInstructionType.CREATE_DEFAULT_DER_CONTROL: create_default_der_control,
    AdminInstructionType.CLEAR_DER_CONTROLS: clear_der_controls,
    AdminInstructionType.SET_POLL_RATE: set_poll_rate,
    AdminInstructionType.SET_POST_RATE: set_post_rate,
    AdminInstructionType.SET_CLIENT_ACCESS: set_client_access,
}

plugin = GridSharePlugin()
