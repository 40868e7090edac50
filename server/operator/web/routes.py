"""The console's pages and form posts, under /console on the operator listener.

Reads need a login (any role); writes (derates) need the operator role, a matching CSRF token and a
same-origin request, and always pass through a confirmation page first. A small script
(static/console.js) polls `/console/state` and reloads the page's content when anything changed.
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridshare.server.operator.audit import Writer
from gridshare.server.operator.auth import SESSION_COOKIE, context
from gridshare.server.operator.errors import FieldError
from gridshare.server.operator.network_schemas import DerateIn
from gridshare.server.operator.services import compliance, curtailment, derates, fleet, overview
from gridshare.server.operator.services.networks import (
    NetworkRef,
    list_networks,
    network_named,
    registered_sites,
)
from gridshare.server.operator.web import pages
from gridshare.server.operator.web.session import (
    LOGIN_CSRF_COOKIE,
    Login,
    NeedLogin,
    Refused,
    check_write,
    console_login,
    end_login,
    start_login,
)
from gridshare.store.console_models import DeviceContact
from gridshare.store.db import activity_value, publication_value
from gridshare.store.models import AssetDerate, EnvelopeSetRecord, Site
from gridshare.store.queries.access import audit_page
from gridshare.store.queries.networks import derates_of, envelope_sets, names_by_version
from gridshare.store.queries.notification_views import outbox_summary, subscriptions_page
from gridshare.store.runtime_settings import ServerSetting

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/console", include_in_schema=False)


def _fmt_time(ts: int | None, tz: str = "UTC", with_date: bool = False) -> str:
    if ts is None:
        return "-"
    local = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(tz))
    return local.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M:%S")


def _ago(ts: int | None, now_s: int) -> str:
    if ts is None:
        return "never"
    d = now_s - ts
    future = d < 0
    d = abs(d)
    text = (
        f"{d} s"
        if d < 120
        else f"{d // 60} min"
        if d < 7200
        else f"{d // 3600} h"
        if d < 172800
        else f"{d // 86400} days"
    )
    return f"in {text}" if future else f"{text} ago"


def _power(w: float | None) -> str:
    if w is None:
        return "none"
    if w == float("inf"):
        return "unlimited"
    if abs(w) >= 1e6:
        return f"{w / 1e6:.2f} MW"
    if abs(w) >= 1e3:
        return f"{w / 1e3:.1f} kW"
    return f"{w:.0f} W"


templates.env.filters["power"] = _power
templates.env.globals["fmt_time"] = _fmt_time
templates.env.globals["ago"] = _ago


def render(
    request: Request, name: str, login: Login | None, status_code: int = 200, **data: Any
) -> HTMLResponse:
    ctx = context(request)
    networks = []
    if login is not None:
        with ctx.sessions() as session:
            networks = [n.name for n in list_networks(session)]
    return templates.TemplateResponse(
        request,
        name,
        {"login": login, "now_s": ctx.now_s(), "networks": networks, "page": name, **data},
        status_code=status_code,
    )


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 16384:
        raise HTTPException(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _session(request: Request) -> Session:
    return context(request).sessions()


# --- login -------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/console/", error: str = "") -> HTMLResponse:
    csrf = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, next=_local(next), error=error, csrf=csrf)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/console")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    target = _local(form.get("next", "/console/"))
    if not expected or not secrets.compare_digest(form.get("csrf", "").encode(), expected.encode()):
        return RedirectResponse(f"/console/login?error=expired&next={quote(target)}", status_code=303)
    session_id = start_login(request, form.get("token", ""))
    if session_id is None:
        return RedirectResponse(f"/console/login?error=token&next={quote(target)}", status_code=303)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=context(request).settings.console_session_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request, login: Login = Depends(console_login)) -> Response:
    form = await _form(request)
    check_write(request, login, form.get("csrf", ""), needs_operator=False)
    end_login(request)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _local(target: str) -> str:
    """Only paths of this console: never redirect a login to another site."""
    return target if target.startswith("/console") and "//" not in target else "/console/"


# --- pages -------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, login: Login = Depends(console_login)) -> HTMLResponse:
    ctx = context(request)
    with _session(request) as session:
        summaries = overview.overview(session, ctx.settings, ctx.now_s())
        rows = fleet.fleet(session, ctx.settings, ctx.now_s())
        recent = list(session.execute(envelope_sets().limit(8)).scalars())
        recent_names = names_by_version(session, (r.network_id for r in recent))
    return render(
        request,
        "overview.html",
        login,
        summaries=summaries,
        fleet=rows,
        recent=[(r, recent_names.get(r.network_id or -1, "")) for r in recent],
    )


@router.get("/networks/{name}", response_class=HTMLResponse)
def network_page(
    request: Request, name: str, asset: str = "", login: Login = Depends(console_login)
) -> HTMLResponse:
    ctx = context(request)
    now = ctx.now_s()
    with _session(request) as session:
        net = network_named(session, name)
        if net is None:
            return render(request, "error.html", login, 404, message=f"no network named {name!r}")
        summary = overview.summary(session, ctx.settings, net, now)
        report = summary.report
        tree = pages.network_tree(session, ctx.settings, net, report, now)
        chart = None
        focus = None
        if report is not None and report.constraints:
            wanted = [c for c in report.constraints if c.asset == asset] if asset else []
            focus = min(wanted, key=lambda c: c.min_spare_pct or 0.0) if wanted else summary.worst
            if focus is not None:
                chart = pages.constraint_chart(report, focus, net.nf.network.timezone, now)
        mine = {s.id for s in registered_sites(session, net).values()}
        results = compliance.fleet_compliance(session, ctx.settings, now - 86400, now, mine)
    return render(
        request,
        "network.html",
        login,
        net=net,
        s=summary,
        tree=tree,
        chart=chart,
        focus=focus,
        tz=net.nf.network.timezone,
        noncompliant=[r for r in results if r.breaches],
    )


@router.get("/sites/{site_id}", response_class=HTMLResponse)
def site_page(request: Request, site_id: int, login: Login = Depends(console_login)) -> HTMLResponse:
    ctx = context(request)
    ctx.contacts.flush(ctx.sessions)
    with _session(request) as session:
        site = session.get(Site, site_id) if 0 <= site_id < 2**31 else None
        if site is None:
            return render(request, "error.html", login, 404, message=f"no site {site_id}")
        data = pages.site_page(session, ctx.settings, site, ctx.now_s())
    return render(request, "site.html", login, 200, **data)


@router.get("/networks/{name}/curtailment", response_class=HTMLResponse)
def curtailment_page(request: Request, name: str, login: Login = Depends(console_login)) -> HTMLResponse:
    ctx = context(request)
    with _session(request) as session:
        net = network_named(session, name)
        if net is None:
            return render(request, "error.html", login, 404, message=f"no network named {name!r}")
        year = curtailment.current_year(net.nf.network.timezone, ctx.now_s())
        ledgers = curtailment.network_ledger(session, ctx.settings, net, year, ctx.now_s())
    return render(
        request, "curtailment.html", login, net=net, year=year, ledgers=ledgers, method=curtailment.METHOD
    )


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(request: Request, login: Login = Depends(console_login)) -> HTMLResponse:
    ctx = context(request)
    ctx.contacts.flush(ctx.sessions)
    now = ctx.now_s()
    with _session(request) as session:
        rows = fleet.fleet(session, ctx.settings, now)
        results = compliance.fleet_compliance(session, ctx.settings, now - 86400, now)
    return render(request, "fleet.html", login, rows=rows, results=results)


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, start: int = 0, login: Login = Depends(console_login)) -> HTMLResponse:
    start = max(0, min(start, 2**31 - 1))
    with _session(request) as session:
        total, rows = audit_page(session, start=start, limit=50)
    return render(request, "audit.html", login, rows=rows, total=total, start=start)


@router.get("/subscriptions", response_class=HTMLResponse)
def subscriptions(request: Request, login: Login = Depends(console_login)) -> HTMLResponse:
    ctx = context(request)
    with _session(request) as session:
        total, views = subscriptions_page(session, aggregator_id=None, failed_only=False, start=0, limit=200)
        summary = outbox_summary(session, ctx.now_s())
    return render(request, "subscriptions.html", login, views=views, total=total, summary=summary)


# --- derates: list, then create and clear through a confirmation ---------------------------------------


@router.get("/derates", response_class=HTMLResponse)
def derate_list(
    request: Request, asset: str = "", network: str = "", login: Login = Depends(console_login)
) -> HTMLResponse:
    ctx = context(request)
    with _session(request) as session:
        rows = list(session.execute(derates_of().limit(100)).scalars())
        nets = list_networks(session)
    # Asset names are unique only within a network: the form picks a (network, asset) pair.
    assets = [(n.name, b.name) for n in nets for b in sorted(n.nf.network.branches, key=lambda b: b.name)]
    return render(
        request,
        "derates.html",
        login,
        rows=rows,
        assets=assets,
        asset=asset,
        network=network,
        several=len(nets) > 1,
        now=ctx.now_s(),
    )


def _target(form: dict[str, str]) -> tuple[str | None, str]:
    """(network, asset) the form names: `target` is "network/asset" (a network name has no "/");
    a form with `asset` alone (one network loaded) leaves the network to the store."""
    target = form.get("target", "")
    if "/" in target:
        network, asset = target.split("/", 1)
        return network or None, asset
    return form.get("network") or None, form.get("asset", "")


def _derate_body(form: dict[str, str], now_s: int) -> DerateIn:
    """The form's fields (percent of rating, hours) as the API's DerateIn; FieldError names a bad field."""
    try:
        pct = float(form.get("percent", ""))
    except ValueError:
        raise FieldError(
            ("percent",), "give the remaining rating as a number of percent, 0 for an outage"
        ) from None
    hours = form.get("hours", "").strip()
    starts = form.get("starts_in_h", "").strip()
    try:
        from_s = now_s + int(float(starts) * 3600) if starts else None
        until_s = (from_s or now_s) + int(float(hours) * 3600) if hours else None
    except ValueError:
        raise FieldError(("hours",), "start and duration are hours, e.g. 1.5") from None
    network, asset = _target(form)
    try:
        return DerateIn(
            asset=asset,
            network=network,
            factor=pct / 100.0,
            reason=form.get("reason", ""),
            from_s=from_s,
            until_s=until_s,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = (
            "percent"
            if first["loc"] and first["loc"][0] == "factor"
            else str(first["loc"][0] if first["loc"] else "")
        )
        raise FieldError((field,), first["msg"]) from None


def _network_of(nets: list[NetworkRef], body: DerateIn) -> NetworkRef | str:
    """The network whose asset the derate names, or why there is none (unknown, or ambiguous)."""
    if body.network is not None:
        net = next((n for n in nets if n.name == body.network), None)
        if net is None:
            return f"no network named {body.network!r} is in service"
        return net if body.asset in net.branch_names else f"no asset named {body.asset!r} in {net.name}"
    having = [n for n in nets if body.asset in n.branch_names]
    if not having:
        return f"no asset named {body.asset!r}"
    if len(having) > 1:
        return f"{body.asset!r} is in {', '.join(n.name for n in having)}: pick the network's asset"
    return having[0]


@router.post("/derates/confirm", response_class=HTMLResponse)
async def derate_confirm(request: Request, login: Login = Depends(console_login)) -> HTMLResponse:
    form = await _form(request)
    check_write(request, login, form.get("csrf", ""))
    ctx = context(request)
    try:
        body = _derate_body(form, ctx.now_s())
    except FieldError as exc:
        return render(request, "error.html", login, 422, message=exc.errors[0][1], back="/console/derates")
    with _session(request) as session:
        net = _network_of(list_networks(session), body)
    if isinstance(net, str):
        return render(request, "error.html", login, 422, message=net, back="/console/derates")
    branch = next(b for b in net.nf.network.branches if b.name == body.asset)
    behind = set(net.nf.network.downstream_nodes(body.asset))
    affected = [s.id for s in net.nf.sites if s.node in behind]
    rating = None if branch.rating is None else (branch.rating.export_w or 0.0, branch.rating.import_w or 0.0)
    return render(
        request,
        "derate_confirm.html",
        login,
        body=body,
        net=net,
        branch=branch,
        affected=affected,
        rating=rating,
    )


@router.post("/derates")
async def derate_create(request: Request, login: Login = Depends(console_login)) -> Response:
    form = await _form(request)
    check_write(request, login, form.get("csrf", ""))
    ctx = context(request)
    network, asset = _target(form)
    try:
        body = DerateIn(
            asset=asset,
            network=network,
            factor=float(form.get("factor", "")),
            reason=form.get("reason", ""),
            from_s=int(form["from_s"]) if form.get("from_s") else None,
            until_s=int(form["until_s"]) if form.get("until_s") else None,
        )
    except (ValueError, ValidationError):
        return render(
            request,
            "error.html",
            login,
            422,
            message="the confirmed derate is malformed",
            back="/console/derates",
        )
    w = Writer(ctx, login.caller, "POST", "/console/derates")
    try:
        with w.transaction("derate.add", f"asset:{body.asset}") as change:
            row = derates.add_derate(change, body, login.caller.name)
            change.details = {**change.details, "via": "console"}
    except FieldError as exc:  # e.g. the network was retired between the two pages
        return render(request, "error.html", login, 422, message=exc.errors[0][1], back="/console/derates")
    target = f"/console/networks/{quote(row.network)}?asset={quote(body.asset)}" if row.network else None
    return RedirectResponse(
        f"{target}&done=derate-{row.id}" if target else f"/console/derates?done=derate-{row.id}",
        status_code=303,
    )


@router.get("/derates/{derate_id}/clear", response_class=HTMLResponse)
def derate_clear_confirm(
    request: Request, derate_id: int, login: Login = Depends(console_login)
) -> HTMLResponse:
    with _session(request) as session:
        row = session.get(AssetDerate, derate_id) if 0 <= derate_id < 2**31 else None
    if row is None:
        return render(request, "error.html", login, 404, message=f"no derate {derate_id}")
    return render(request, "derate_clear.html", login, row=row)


@router.post("/derates/{derate_id}/clear")
async def derate_clear(request: Request, derate_id: int, login: Login = Depends(console_login)) -> Response:
    form = await _form(request)
    check_write(request, login, form.get("csrf", ""))
    if not 0 <= derate_id < 2**31:
        raise HTTPException(404, "no such derate")
    w = Writer(context(request), login.caller, "POST", f"/console/derates/{derate_id}/clear")
    with w.transaction("derate.clear", f"derate:{derate_id}") as change:
        derates.clear_derate(change, derate_id)
        change.details = {"via": "console"}
    return RedirectResponse(f"/console/derates?done=cleared-{derate_id}", status_code=303)


# --- refresh ---------------------------------------------------------------------------------------


@router.get("/state")
def state(request: Request, login: Login = Depends(console_login)) -> JSONResponse:
    """A marker that changes whenever anything a page shows may have: the script reloads content on it."""
    with _session(request) as session:
        last_set = session.execute(select(func.max(EnvelopeSetRecord.id))).scalar_one()
        statuses = session.execute(
            select(func.max(ServerSetting.changed_s)).where(ServerSetting.key.startswith("feeder_status."))
        ).scalar_one()
        contact = session.execute(select(func.max(DeviceContact.last_s))).scalar_one()
        marker = f"{publication_value(session)}.{activity_value(session)}.{last_set}.{statuses}.{contact}"
    return JSONResponse({"marker": marker}, headers={"cache-control": "no-store"})


def install_console(app: FastAPI) -> None:
    """Mount the console's pages and static files, and answer its login and refusal errors."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console-static")

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, _exc: NeedLogin) -> Response:
        if request.url.path == "/console/state":
            return JSONResponse({"detail": "log in again"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        login = None
        with contextlib.suppress(NeedLogin):
            login = console_login(request)
        return render(request, "error.html", login, 403, message=exc.reason, title="Refused")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)
