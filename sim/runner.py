"""Run one scenario: server, fleet registration, the clock, the device clients and the physics loop.

Order matters and is the one a real fleet would follow: the server starts with the network, every
site registers and gives its NMI, the engine computes the first envelopes (all while simulated time
stands still), every site reads its schedule, and only then does the clock start. From there the
clients poll on their own (asyncio tasks) while the physics loop steps every site at each
simulated step and solves the network twice: as the fleet behaved, and as it would have behaved
had every site complied.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridshare.certs.devpki import DevPki, create_dev_pki, issue_client_certificates, load_dev_pki
from gridshare.certs.identity import sfdi_from_lfdi
from gridshare.envelopes.forecast import local_hours
from gridshare.grid.netfile import NetworkFile, parse_network_document
from gridshare.grid.network import Network, Site
from gridshare.sim.acflow import AcGrid, solve_seconds
from gridshare.sim.agent import Link, LinkStats, Outages, SiteAgent
from gridshare.sim.clock import SharedClock
from gridshare.sim.events import EventBook
from gridshare.sim.fleet import SimSite, build_fleet, outage_windows, step_times
from gridshare.sim.pandapower_net import GivenNetGrid
from gridshare.sim.powerflow import Background, Constraint, LinearGrid
from gridshare.sim.record import Recording
from gridshare.sim.scenario import Scenario
from gridshare.sim.server import ServerPlan, SpawnedServer

log = logging.getLogger("gridshare.sim")

#: (steps done, steps total, simulated time, counters) -> None; the CLI draws a progress bar with it.
ProgressFn = Callable[[int, int, float, dict[str, int]], None]


@dataclass
class RunOutput:
    scenario: Scenario
    network: NetworkFile
    sites: list[SimSite]
    recording: Recording
    agents: dict[str, SiteAgent]
    outages: dict[str, list[tuple[float, float]]]
    stats: LinkStats
    recomputes: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    setup_wall_s: float = 0.0
    start_s: int = 0
    end_s: int = 0
    powerflow: dict[str, Any] = field(default_factory=dict)  # AC solve cost, when AC
    #: the network the violations were counted on: the engine's, or a given pandapower net (its counts)
    powerflow_network: dict[str, Any] = field(default_factory=lambda: {"source": "engine"})
    #: the engine's constraints, which `recording.excess_linear` is over (a given net has its own list)
    constraints_linear: tuple[Constraint, ...] = ()


def managed_lfdi(seed: int, site_id: str) -> str:
    """An lFDI for a site an aggregator registers (it has no certificate of its own here)."""
    return hashlib.sha256(f"lfdi:{seed}:{site_id}".encode()).hexdigest()[:40].upper()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_nmis(doc: dict[str, Any]) -> dict[str, Any]:
    """Every site needs an NMI to bind to a device; invent one for those the file leaves without."""
    doc = copy.deepcopy(doc)
    for i, site in enumerate(doc.get("sites", [])):
        site.setdefault("nmi", f"SIM{i:07d}")
        if site["nmi"] is None:
            site["nmi"] = f"SIM{i:07d}"
    return doc


def run_scenario(scenario: Scenario, work_dir: Path, progress: ProgressFn | None = None) -> RunOutput:
    """Run `scenario` to the end (blocking); `work_dir` holds the PKI and the server's store."""
    return asyncio.run(_run(scenario, Path(work_dir), progress))


async def _run(scenario: Scenario, work_dir: Path, progress: ProgressFn | None) -> RunOutput:
    t_setup = time.perf_counter()
    work_dir.mkdir(parents=True, exist_ok=True)
    spawn = scenario.server.mode == "spawn"
    doc = _with_nmis(scenario.network_document()) if spawn else scenario.network_document()
    nf = parse_network_document(doc, source=scenario.name)
    net = nf.network
    realtime = scenario.clock.mode == "realtime" or not spawn
    start_s = int(time.time()) if realtime else scenario.start_s(net.timezone)
    times = step_times(start_s, scenario.duration_s, scenario.step_s)
    end_s = int(times[-1]) + scenario.step_s
    sites = build_fleet(scenario, nf, times)
    if not sites:
        raise ValueError("the network has no site with an NMI: nothing to simulate")
    grid = LinearGrid(net, [s.spec for s in sites])
    # AC (pandapower, tens of ms a solve) re-solves the recorded steps after the run: the devices do not
    # depend on the network solution, and solving live would make the physics lag the server's clock.
    # Built now so that a missing pandapower, or a given pandapower network that does not fit the
    # scenario, stops the run before anything starts.
    ac = ac_grid(scenario, net, [s.spec for s in sites])
    background = Background(
        net,
        start_s,
        end_s,
        scenario.server.envelope_interval_s,
        scenario.fleet.background_noise,
        np.random.default_rng(scenario.seed + 1),
    )
    outages = outage_windows(scenario, sites, start_s, net.timezone)
    clock = SharedClock(start_s, 1.0 if realtime else scenario.clock.factor)
    if realtime:
        clock.run()

    if spawn and not scenario.server.database_url:
        for old in work_dir.glob("gridshare.db*"):  # every run starts from an empty store
            old.unlink()
    pki, certs, aggregators = _certificates(scenario, sites, work_dir, spawn)
    server: SpawnedServer | None = None
    if spawn:
        server = SpawnedServer(_plan(scenario, doc, work_dir, pki), clock)
        server.start()
        base_url = server.base_url
    else:
        assert scenario.server.url
        base_url = scenario.server.url.rstrip("/")
    stats = LinkStats()
    links: list[Link] = []
    agents: dict[str, SiteAgent] = {}
    group_links: dict[str, Link] = {}
    try:
        group_sizes = Counter(s.group for s in sites if s.group)
        for name, cert in aggregators.items():
            group_links[name] = Link(
                base_url,
                pki.ca_path,
                cert.cert_path,
                cert.key_path,
                stats,
                connections=min(
                    max(group_sizes[name], 1), 16
                ),  # an aggregator keeps several connections open
            )
            links.append(group_links[name])
        for s in sites:
            if s.group:
                link, lfdi = group_links[s.group], managed_lfdi(scenario.seed, s.id)
            else:
                cert = certs[s.id]
                link = Link(base_url, pki.ca_path, cert.cert_path, cert.key_path, stats)
                links.append(link)
                lfdi = cert.lfdi
            agents[s.id] = SiteAgent(
                s.id,
                s.spec.nmi or "",
                lfdi,
                sfdi_from_lfdi(lfdi),
                link,
                clock,
                EventBook(s.id, s.response_delay_s),
                Outages(tuple(outages.get(s.id, ()))),
                scenario.fleet.fallback_timeout_s,
                scenario.fleet.list_page_size,
                managed=s.group is not None,
                seed=scenario.seed,
            )
        await _each(agents.values(), lambda a: a.register())
        if server is not None:
            outcome = server.recompute("fleet registered")
            if outcome["status"] != "published":
                raise RuntimeError(f"the first envelope computation did not publish: {outcome}")
        await _each(agents.values(), lambda a: a.discover())
        await _each(agents.values(), lambda a: a.ensure_mirror())
        for a in agents.values():
            a.last_success_s = clock.now()
        setup_wall_s = time.perf_counter() - t_setup

        recording = Recording(times, scenario.step_s, tuple(s.id for s in sites), grid.constraints)
        stop = asyncio.Event()
        t_run = time.perf_counter()
        clock.run()
        tasks = [asyncio.create_task(a.run(stop)) for a in agents.values()]
        try:
            await _physics(scenario, sites, agents, grid, background, clock, recording, progress)
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=30)
        wall_s = time.perf_counter() - t_run
        for a in agents.values():
            a.close_fallback(end_s)
    finally:
        for link in links:
            with contextlib.suppress(Exception):
                await link.close()
        recomputes = server.stop() if server is not None else []
    if ac is not None:
        solve_recorded(recording, ac, background, progress)
    return RunOutput(
        scenario=scenario,
        network=nf,
        sites=sites,
        recording=recording,
        agents=agents,
        outages=outages,
        stats=stats,
        recomputes=recomputes,
        wall_s=wall_s,
        setup_wall_s=setup_wall_s,
        start_s=start_s,
        end_s=end_s,
        powerflow=solve_seconds(ac),
        powerflow_network=ac.describe() if isinstance(ac, GivenNetGrid) else {"source": "engine"},
        constraints_linear=grid.constraints,
    )


def ac_grid(scenario: Scenario, network: Network, sites: list[Site]) -> AcGrid | GivenNetGrid | None:
    """The AC solver a scenario asks for: a given pandapower network, the engine's own, or none (linear)."""
    if scenario.pandapower is not None:
        return GivenNetGrid.from_spec(scenario.pandapower, scenario.base_dir, network, sites)
    return AcGrid(network, sites) if scenario.powerflow == "ac" else None


def solve_recorded(
    rec: Recording, grid: AcGrid | GivenNetGrid, background: Background, progress: ProgressFn | None = None
) -> None:
    """Solve every recorded step again with AC power flow; the linear model's excess is kept beside it.

    A given pandapower network has constraints of its own (its elements, not the engine's branches):
    the recording's constraint columns become that list, and `excess_linear` stays over the engine's.
    """
    rec.excess_linear = rec.excess.copy()
    if grid.constraints != rec.constraints:
        n, c = len(rec.times_s), len(grid.constraints)
        rec.constraints = grid.constraints
        rec.value = np.zeros((n, c), dtype=np.float64)
        rec.excess = np.zeros((n, c), dtype=np.float32)
        rec.excess_compliant = np.zeros((n, c), dtype=np.float32)
    counters = {"fallback": 0, "violations": 0, "violations_compliant": 0}
    total = len(rec.times_s)
    for k, t in enumerate(rec.times_s[: rec.steps_done]):
        bg = background.at(float(t))
        actual, compliant = rec.net_export_w[k].astype(float), rec.compliant_export_w[k].astype(float)
        solved = grid.solve(actual, bg)
        solved_compliant = solved if np.array_equal(actual, compliant) else grid.solve(compliant, bg)
        rec.value[k] = solved.value
        rec.excess[k] = solved.excess
        rec.excess_compliant[k] = solved_compliant.excess
        counters["fallback"] = int(rec.fallback[k].sum())
        counters["violations"] += int((solved.excess > 0).sum())
        counters["violations_compliant"] += int((solved_compliant.excess > 0).sum())
        if progress is not None:
            progress(k + 1, total, float(t), counters)


async def _each(agents: Any, call: Callable[[SiteAgent], Any], concurrency: int = 16) -> None:
    """Run one setup exchange for every agent, a few at a time; any failure stops the run."""
    gate = asyncio.Semaphore(concurrency)

    async def one(agent: SiteAgent) -> None:
        async with gate:
            await call(agent)

    await asyncio.gather(*(one(a) for a in agents))


def _certificates(
    scenario: Scenario, sites: list[SimSite], work_dir: Path, spawn: bool
) -> tuple[DevPki, dict[str, Any], dict[str, Any]]:
    """A certificate per device-mode site and one per aggregator group, from a fresh or the server's PKI."""
    groups = [g.name for g in scenario.fleet.groups]
    own = [s for s in sites if not s.group]
    if spawn:
        pki = create_dev_pki(work_dir / "pki", devices=0, aggregators=len(groups), force=True)
        prefix = "site"
    else:
        assert scenario.server.pki_dir is not None
        pki_dir = scenario.server.pki_dir
        pki = load_dev_pki(pki_dir if pki_dir.is_absolute() else scenario.base_dir / pki_dir)
        if len(pki.aggregators) < len(groups):
            raise ValueError(
                f"connect mode: the PKI has {len(pki.aggregators)} aggregator certificates; "
                f"{len(groups)} groups need one each"
            )
        prefix = f"sim{scenario.seed}"
    # Names are stable per site so that a later run against the same server is the same fleet coming
    # back (its EndDevices and mirrors exist) rather than a second device claiming every NMI.
    names = {s.id: f"{prefix}-{_safe_name(s.id)}" for s in own}
    have = {c.name: c for c in pki.clients if c.kind == "device"}
    missing = [names[s.id] for s in own if names[s.id] not in have]
    if missing:
        have.update((c.name, c) for c in issue_client_certificates(pki.directory, missing, "device"))
    certs = {s.id: have[names[s.id]] for s in own}
    aggregators = dict(zip(groups, pki.aggregators, strict=False))
    return pki, certs, aggregators


def _safe_name(site_id: str) -> str:
    """A site id as a PKI client name (letters, digits, '.', '_', '-'), distinct per distinct id."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", site_id)[:80]
    return clean if clean == site_id else f"{clean}-{hashlib.sha256(site_id.encode()).hexdigest()[:8]}"


def _plan(scenario: Scenario, doc: dict[str, Any], work_dir: Path, pki: DevPki) -> ServerPlan:
    s = scenario.server
    settings: dict[str, Any] = {
        "poll_rates_s": s.poll_rates_s,
        "mup_post_rate_s": s.post_rate_s,
        "default_export_limit_w": s.default_export_limit_w,
        "default_import_limit_w": s.default_import_limit_w,
        "envelope_interval_s": s.envelope_interval_s,
        "envelope_horizon_s": s.envelope_horizon_s,
        # The engine refuses stale inputs; a reading is dated by the start of the period it averages,
        # so at the scenario's post rate the newest one is up to two periods old.
        "telemetry_max_age_s": max(3 * s.post_rate_s, 900),
        "forecast_max_age_s": max(4 * s.post_rate_s, 3600),
    }
    return ServerPlan(
        data_dir=work_dir,
        port=free_port(),
        pki_dir=pki.directory,
        network_doc=doc,
        policy=scenario.policy,
        recompute_interval_s=s.recompute_interval_s,
        database_url=s.database_url,
        settings=settings,
    )


async def _physics(
    scenario: Scenario,
    sites: list[SimSite],
    agents: dict[str, SiteAgent],
    grid: LinearGrid,
    background: Background,
    clock: SharedClock,
    rec: Recording,
    progress: ProgressFn | None,
) -> None:
    """Step every site at each simulated step and solve the network as it behaved and as it should have."""
    step_s = scenario.step_s
    hours = local_hours(rec.times_s, grid.network.timezone)
    n = len(sites)
    actual = np.zeros(n)
    compliant = np.zeros(n)
    counters = {"fallback": 0, "violations": 0, "violations_compliant": 0}
    total = len(rec.times_s)
    for k, t in enumerate(rec.times_s):
        t = float(t)
        await clock.sleep_until(t)
        rec.lag_s[k] = max(clock.now() - t, 0.0)
        in_fallback = 0
        for i, s in enumerate(sites):
            agent = agents[s.id]
            control = agent.control_at(t)
            fallback = agent.in_fallback(t)
            in_fallback += fallback
            step = s.model.step(
                control, s.pv_available_w[k], s.load_w[k], hours[k], step_s, obey=not s.non_compliant
            )
            if s.twin is not None:
                twin = s.twin.step(control, s.pv_available_w[k], s.load_w[k], hours[k], step_s, obey=True)
                compliant[i] = twin.net_export_w
            else:
                compliant[i] = step.net_export_w
            actual[i] = step.net_export_w
            agent.record(t, step_s, step.net_export_w)
            rec.pv_available_w[k, i] = step.pv_available_w
            rec.pv_w[k, i] = step.pv_w
            rec.pv_allowed_w[k, i] = step.pv_allowed_w
            rec.ev_wanted_w[k, i] = step.ev_wanted_w
            rec.ev_w[k, i] = step.ev_w
            rec.export_limit_w[k, i] = np.inf if control.export_limit_w is None else control.export_limit_w
            rec.import_limit_w[k, i] = np.inf if control.import_limit_w is None else control.import_limit_w
            rec.fallback[k, i] = fallback
        bg = background.at(t)
        solved = grid.solve(actual, bg)
        solved_compliant = grid.solve(compliant, bg)
        rec.net_export_w[k] = actual
        rec.compliant_export_w[k] = compliant
        rec.value[k] = solved.value
        rec.excess[k] = solved.excess
        rec.excess_compliant[k] = solved_compliant.excess
        rec.steps_done = k + 1
        counters["fallback"] = in_fallback
        counters["violations"] += int((solved.excess > 0).sum())
        counters["violations_compliant"] += int((solved_compliant.excess > 0).sum())
        if progress is not None:
            progress(k + 1, total, t, counters)
