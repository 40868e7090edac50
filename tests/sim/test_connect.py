"""The simulator in `connect` mode: a fleet against a `gridshare serve` that was already running.

The server is a real subprocess on loopback with a fresh data directory (its dev PKI signs the fleet's
certificates, its demo feeder is the network). The fleet runs twice against it: the second run is the
same fleet coming back, so every EndDevice exists already; aggregator-managed devices get 409 on
registration and must carry on with the EndDevice they have rather than fail or register twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from gridshare.certs.identity import sfdi_from_lfdi
from gridshare.sim import wire
from gridshare.sim.agent import Link, LinkStats, Outages, SiteAgent
from gridshare.sim.clock import SharedClock
from gridshare.sim.events import EventBook
from gridshare.sim.report import write_report
from gridshare.sim.runner import managed_lfdi, run_scenario
from gridshare.sim.scenario import load_scenario
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
NS = {"s": "urn:ieee:std:2030.5:ns"}
GROUP_COUNT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`gridshare serve` on free loopback ports with a fresh data dir; stopped by its PID."""
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
    env["GRIDSHARE_OPERATOR_PORT"] = str(free_port())
    gridshare = Path(sys.executable).with_name("gridshare")
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(gridshare), "serve", "--port", str(port), "--data-dir", str(tmp / "data")],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        index = tmp / "data" / "pki" / "clients.json"
        deadline = time.monotonic() + 60
        status = None
        while status != 200:
            assert time.monotonic() < deadline, (tmp / "serve.log").read_text()
            assert proc.poll() is None, (tmp / "serve.log").read_text()
            time.sleep(0.2)
            if not index.exists():
                continue
            try:
                status = httpx.get(f"{url}/dcap", verify=_tls(index, "device")).status_code
            except (httpx.TransportError, StopIteration, ValueError):
                continue
        yield url, tmp / "data" / "pki"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def _tls(index: Path, kind: str) -> ssl.SSLContext:
    pki = json.loads(index.read_text())
    client = next(c for c in pki["clients"] if c["kind"] == kind)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.load_cert_chain(client["cert"], client["key"])
    return ctx


def _scenario(url: str, pki_dir: Path):  # type: ignore[no-untyped-def]
    """The repository's connect example, pointed at this server and cut to 15 s."""
    example = REPO / "examples" / "scenarios" / "connect-demo.yaml"
    server = {"mode": "connect", "url": url, "pki_dir": str(pki_dir)}
    scenario = load_scenario(example, {"server": server, "duration_h": 15 / 3600, "step_s": 3})
    assert [g.count for g in scenario.fleet.groups] == [GROUP_COUNT]
    return scenario


def _managed_edevs(url: str, pki_dir: Path) -> list[str]:
    """The EndDevices the dev aggregator sees, without its own virtual one."""
    with httpx.Client(base_url=url, verify=_tls(pki_dir / "clients.json", "aggregator")) as c:
        el = etree.fromstring(c.get("/edev", params={"l": 100}).content)
    return [d.get("href") for d in el.findall("s:EndDevice", NS) if d.get("href") != "/edev/0"]


def test_a_fleet_runs_twice_against_a_running_server(server: tuple[str, Path], tmp_path: Path) -> None:
    url, pki_dir = server
    scenario = _scenario(url, pki_dir)
    sites_in_file = 30  # every site of the demo feeder has an NMI
    before = set(_managed_edevs(url, pki_dir))

    first = run_scenario(scenario, tmp_path / "work1")
    figs = write_report(first, tmp_path / "report1")
    assert figs["sites"] == sites_in_file
    assert figs["server"]["errors"] == {}, figs["server"]["errors"]
    assert figs["server"]["requests"]["edev"] >= 2 * sites_in_file
    assert (tmp_path / "report1" / "report.md").stat().st_size > 0
    assert all(not a.problems for a in first.agents.values()), [a.problems for a in first.agents.values()]
    hrefs = {sid: a.edev.href for sid, a in first.agents.items() if a.edev}
    assert len(hrefs) == sites_in_file and len(set(hrefs.values())) == sites_in_file
    # the server bound its dev devices to demo sites: those NMIs are not the fleet's to take
    refused = {sid for sid, a in first.agents.items() if a.nmi_refused}
    clients = json.loads((pki_dir / "clients.json").read_text())["clients"]
    dev_devices = [c for c in clients if c["kind"] == "device" and c["name"].startswith("device-")]
    assert refused and len(refused) == len(dev_devices), (refused, [c["name"] for c in dev_devices])
    managed = set(_managed_edevs(url, pki_dir))
    assert len(managed - before) == GROUP_COUNT

    # the same fleet again: registrations meet existing EndDevices (409 for the managed ones)
    second = run_scenario(scenario, tmp_path / "work2")
    figs = write_report(second, tmp_path / "report2")
    assert figs["server"]["errors"] == {}, figs["server"]["errors"]
    assert all(not a.problems for a in second.agents.values()), [a.problems for a in second.agents.values()]
    assert {sid: a.edev.href for sid, a in second.agents.items() if a.edev} == hrefs
    assert set(_managed_edevs(url, pki_dir)) == managed  # nobody registered twice
    assert figs["server"]["requests"]["derc"] >= sites_in_file  # and every device read its schedule


def test_an_agent_finds_its_end_device_in_the_list(server: tuple[str, Path], tmp_path: Path) -> None:
    """Without a Location on the 409, the EndDeviceList (paged) is where the existing EndDevice is found."""
    url, pki_dir = server
    pki = json.loads((pki_dir / "clients.json").read_text())
    agg = next(c for c in pki["clients"] if c["kind"] == "aggregator")

    async def go() -> list[str | None]:
        link = Link(url, Path(pki["ca"]), Path(agg["cert"]), Path(agg["key"]), LinkStats())
        clock = SharedClock(time.time(), 1.0)
        clock.run()

        def agent(site_id: str) -> SiteAgent:
            lfdi = managed_lfdi(99, site_id)
            return SiteAgent(
                site_id, "", lfdi, sfdi_from_lfdi(lfdi), link, clock, EventBook(site_id, 0.0), Outages(),
                3600.0, page_size=1, managed=True,
            )  # fmt: skip

        try:
            a, b, stranger = agent("find-a"), agent("find-b"), agent("never-registered")
            registered = [await a._register_end_device("/edev"), await b._register_end_device("/edev")]
            again = await a._register_end_device("/edev")  # a 409: the existing EndDevice
            # page size 1: the walk goes past the virtual aggregator device and every other one
            found = [await x.find_end_device("/edev") for x in (a, b, stranger)]
            return [*registered, again, *found]
        finally:
            await link.close()

    href_a, href_b, again, found_a, found_b, found_stranger = asyncio.run(go())
    assert href_a and href_b and href_a != href_b
    assert again == href_a
    assert (found_a, found_b, found_stranger) == (href_a, href_b, None)


def test_a_device_posts_readings_at_the_rate_its_mirror_gives(server: tuple[str, Path]) -> None:
    """IEEE 2030.5: MirrorUsagePoint.postRate governs posting to that mirror. This server gives 60 s on
    its mirrors and no postRate on EndDevices (900 s by default there): readings must come every 60 s."""
    url, pki_dir = server
    pki = json.loads((pki_dir / "clients.json").read_text())
    agg = next(c for c in pki["clients"] if c["kind"] == "aggregator")

    async def go() -> tuple[int, int, int]:
        stats = LinkStats()
        link = Link(url, Path(pki["ca"]), Path(agg["cert"]), Path(agg["key"]), stats)
        clock = SharedClock(time.time(), 30.0)  # only the device's clock runs fast: 30 simulated s a second
        lfdi = managed_lfdi(7, "mirror-rate")
        agent = SiteAgent(
            "mirror-rate", "", lfdi, sfdi_from_lfdi(lfdi), link, clock, EventBook("mirror-rate", 0.0),
            Outages(), 3600.0, managed=True,
        )  # fmt: skip
        try:
            href = await agent._register_end_device("/edev")
            agent.edev = wire.end_device(wire.parse((await link.request("edev", "GET", href)).content))
            await agent.ensure_mirror()
            clock.run()
            agent.record(clock.now(), 1.0, 500.0)  # something to report
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(200 / 30)  # 200 simulated seconds
            stop.set()
            await asyncio.wait({task}, timeout=30)
            return agent.rates.post_s, agent.rates.mirror_post_s, stats.by_kind["reading"]
        finally:
            await link.close()

    end_device_rate, mirror_rate, readings = asyncio.run(go())
    assert end_device_rate == 900  # the EndDevice gives none: the standard's default
    assert mirror_rate == 60  # the server's mup_post_rate_s default, given on the MirrorUsagePoint
    assert readings >= 3, readings  # at 900 s there would have been none, or one
