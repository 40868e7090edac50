"""The operator console in a real browser (Debian's Chromium driven by Playwright).

An operator logs in with a token, sees the demo network, derates the line feeding the solar farm
through the confirmation page, and watches the network page and the site's envelope change without
reloading; a viewer finds the console read-only and its writes refused, with or without a CSRF token.
Screenshots go to $GRIDSHARE_SCREENSHOTS (docs/console/ holds the committed ones) or the test's tmp dir.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gridshare.process.demo import seed_demo
from gridshare.recompute.scheduler import Recomputer
from gridshare.store.models import Site
from tests.support.bodies import SEP_XML, meter_reading, mirror_usage_point
from tests.support.operator_api import OPERATOR, VIEWER, OperatorApi, running_operator_api
from tests.support.servers import RunningServer

CHROMIUM = os.environ.get("GRIDSHARE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _site_id(server: RunningServer, device: str) -> int:
    with server.ctx.sessions() as s:
        return int(s.execute(select(Site.id).where(Site.lfdi == server.pki.client(device).lfdi)).scalar_one())


def _a_busy_hour(server: RunningServer, engine: Recomputer) -> None:
    """An hour of envelopes published every 5 minutes, device-1 polling and reporting near its limit."""
    me = server.pki.client("device-1")
    site = _site_id(server, "device-1")
    location = None
    with server.client("device-1") as c:
        for step in range(12):
            engine.run_once()
            c.get(f"/edev/{site}/derp/1/derc", params={"l": 5})
            with server.ctx.sessions() as s:
                from gridshare.store.queries.console import limit_spans

                spans = limit_spans(s, site, server.clock.at_s, server.clock.at_s + 1)
            limit = spans[-1][2] if spans else 1_000_000
            value = int(limit * (0.93 if step != 7 else 1.25))  # one reading well over its limit
            t = int(server.clock.at_s) + 60
            if location is None:
                body = mirror_usage_point("E5" * 16, me.lfdi, "F6" * 16, t, value)
                location = c.post("/mup", content=body, headers=SEP_XML).headers["location"]
            else:
                c.post(location, content=meter_reading("F6" * 16, t, value), headers=SEP_XML)
            server.clock.advance(300)
    server.ctx.contacts.flush(server.ctx.sessions)


@pytest.fixture
def console(server: RunningServer) -> Iterator[tuple[RunningServer, OperatorApi, Recomputer]]:
    settings = server.ctx.settings
    settings.change_poll_s = 1
    settings.recompute_interval_s = 3600
    server.clock.advance(16 * 3600)  # late morning in New York: the solar farm has sun to lose
    seed_demo(server.ctx, server.pki)
    engine = Recomputer(server.ctx)
    _a_busy_hour(server, engine)
    engine.start()
    try:
        with running_operator_api(server.ctx) as api:
            yield server, api, engine
    finally:
        engine.stop()


@pytest.fixture
def quiet_console(server: RunningServer) -> Iterator[tuple[RunningServer, OperatorApi, Recomputer]]:
    """The demo network with one publication and no engine running: enough to be refused in."""
    seed_demo(server.ctx, server.pki)
    engine = Recomputer(server.ctx)
    engine.run_once()
    with running_operator_api(server.ctx) as api:
        yield server, api, engine


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("GRIDSHARE_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _browser(play: object, tmp: Path, name: str) -> object:
    profile = tmp / f"profile-{name}"
    shutil.rmtree(profile, ignore_errors=True)
    return play.chromium.launch_persistent_context(  # type: ignore[attr-defined]
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=ARGS,
        viewport={"width": 1360, "height": 900},
    )


def _login(page: object, base: str, token: str) -> None:
    page.goto(f"{base}/console/")  # type: ignore[attr-defined]
    page.fill("input[name=token]", token)  # type: ignore[attr-defined]
    page.click("button.primary")  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}/console/")  # type: ignore[attr-defined]


def _kw(text: str) -> float:
    number, unit = re.match(r"\s*([-\d.]+)\s*(MW|kW|W)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"MW": 1000.0, "kW": 1.0, "W": 0.001}[unit]


def test_operator_derates_and_watches_the_network_and_a_site_follow(
    console: tuple[RunningServer, OperatorApi, Recomputer], shots: Path, tmp_path: Path
) -> None:
    server, api, _engine = console
    base = api.base_url
    farm = _site_id(server, "device-1")
    with sync_api.sync_playwright() as play:
        browser = _browser(play, tmp_path, "operator")
        page = browser.new_page()
        _login(page, base, api.tokens[OPERATOR])
        assert "DYNAMIC" in page.inner_text(".state-word")
        assert "demo-feeder" in page.inner_text("main")
        page.screenshot(path=str(shots / "overview.png"), full_page=True)

        site_tab = browser.new_page()
        site_tab.goto(f"{base}/console/sites/{farm}")
        before_kw = _kw(site_tab.inner_text(".tile .v >> nth=0"))
        site_tab.screenshot(path=str(shots / "site.png"), full_page=True)

        page.goto(f"{base}/console/networks/demo-feeder?asset=f2-cd")
        assert "derated" not in page.inner_text("table.tree")
        page.screenshot(path=str(shots / "network.png"), full_page=True)

        page.goto(f"{base}/console/derates?asset=f2-cd")
        page.fill("input[name=percent]", "20")
        page.fill("input[name=reason]", "hot joint on the f2-c to f2-d span")
        page.click("text=Review")
        assert "Derate f2-cd to 20 % of its rating?" in page.inner_text("h1")
        assert "solar-farm-north" in page.inner_text("main")
        page.screenshot(path=str(shots / "derate-confirm.png"), full_page=True)
        page.click("text=Confirm derate")
        page.wait_for_url(re.compile(r".*/console/networks/demo-feeder\?asset=f2-cd&done=derate-\d+"))
        assert "derated to 20%" in page.inner_text("table.tree")
        # The engine recomputes within seconds and the page refreshes itself: no reload here.
        page.wait_for_selector("text=is reduced by a derate", timeout=60_000)
        page.screenshot(path=str(shots / "network-derated.png"), full_page=True)

        site_tab.wait_for_function(
            "before => { const v = document.querySelector('.tile .v'); if (!v) return false;"
            " const m = v.textContent.match(/([\\d.]+)\\s*(MW|kW)/);"
            " return m && parseFloat(m[1]) * (m[2] === 'MW' ? 1000 : 1) < before; }",
            arg=before_kw,
            timeout=60_000,
        )
        after_kw = _kw(site_tab.inner_text(".tile .v >> nth=0"))
        assert after_kw < before_kw
        site_tab.screenshot(path=str(shots / "site-derated.png"), full_page=True)

        page.goto(f"{base}/console/fleet")
        page.screenshot(path=str(shots / "fleet.png"), full_page=True)
        page.goto(f"{base}/console/networks/demo-feeder/curtailment")
        assert "solar-farm-north" in page.inner_text("table")
        page.screenshot(path=str(shots / "curtailment.png"), full_page=True)
        page.goto(f"{base}/console/audit")
        assert "derate.add" in page.inner_text("table")
        page.goto(f"{base}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
        assert "GridShare operator API" in page.inner_text(".swagger-ui .info .title")
        browser.close()


def test_a_viewer_gets_a_read_only_console(
    quiet_console: tuple[RunningServer, OperatorApi, Recomputer], shots: Path, tmp_path: Path
) -> None:
    _server, api, _engine = quiet_console
    base = api.base_url
    with sync_api.sync_playwright() as play:
        browser = _browser(play, tmp_path, "viewer")
        page = browser.new_page()
        _login(page, base, api.tokens[VIEWER])
        page.goto(f"{base}/console/derates")
        assert "Read-only console" in page.inner_text("main")
        assert page.query_selector("form[action='/console/derates/confirm']") is None
        page.screenshot(path=str(shots / "viewer-derates.png"), full_page=True)
        csrf = page.get_attribute("meta[name=csrf-token]", "content")
        with_csrf = page.request.post(
            f"{base}/console/derates/confirm", form={"csrf": csrf or "", "asset": "f2-cd", "percent": "10"}
        )
        assert with_csrf.status == 403 and "read-only" in with_csrf.text()
        api_write = page.request.post(f"{base}/derates", data={"asset": "f2-cd", "factor": 0.1})
        assert api_write.status == 403  # the session cookie alone (no CSRF header) cannot write
        forged = page.request.post(
            f"{base}/derates", data={"asset": "f2-cd", "factor": 0.1}, headers={"x-csrf-token": csrf or ""}
        )
        assert forged.status == 403  # with it, the viewer role still cannot
        browser.close()
    assert api.audit_count() == 0
