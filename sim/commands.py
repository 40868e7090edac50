"""`gridshare sim`: run a scenario against a server, or compare allocation rules on the same fleet."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gridshare.envelopes.compute import POLICIES
from gridshare.grid.network import NetworkError
from gridshare.sim.scenario import Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:  # the runner pulls in httpx and the device models; load them only for a run
    from gridshare.sim.runner import ProgressFn

console = Console(stderr=True)
if not console.is_terminal:  # a log file or a pipe: one long line beats a bar cut at 80 columns
    console = Console(stderr=True, width=160)

#: Exit status of a run (or a comparison) whose figures do not describe the engine (docs/simulator.md).
EXIT_NOT_VALID = 3
_EPILOG = (
    "\b\nExit status:\n"
    "  0  the report is written and the run is valid\n"
    "  1  the scenario, its network file or the run failed (the message names the field)\n"
    "  2  a bad option\n"
    f"  {EXIT_NOT_VALID}  the report is written, but the run is NOT VALID: the machine could not keep\n"
    "     up with the clock, or the fleet ran mostly on fallback envelopes (the report says why)"
)


def _quiet_libraries() -> None:
    """httpx logs every request at INFO: thousands of lines over the progress bar."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


@click.group("sim")
def sim_group() -> None:
    """Simulated CSIP-AUS fleets: what devices actually do under GridShare's envelopes."""


def _load(
    path: Path, policy: str | None, factor: float | None, hours: float | None, powerflow: str | None = None
) -> Scenario:
    overrides: dict[str, Any] = {}
    try:
        scenario = load_scenario(path)
        if policy:
            overrides["policy"] = policy
        if powerflow:
            overrides["powerflow"] = powerflow
        if hours:
            overrides["duration_h"] = hours
        if factor:
            overrides["clock"] = {**scenario.clock.model_dump(), "factor": factor}
        if overrides:
            scenario = load_scenario(path, overrides)
        scenario.network_file()  # a bad network file stops here, naming its file, line and field
        return scenario
    except (ScenarioError, NetworkError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None


@contextmanager
def _progress(tz: str, label: str) -> Iterator[ProgressFn]:
    """A rich progress bar fed by the physics loop: simulated time, sites in fallback, violations."""
    zone = ZoneInfo(tz)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        # the label is text, not markup: "suburb [pro-rata]" must not lose its rule as a style tag
        task = bar.add_task(escape(label), total=None, status="registering the fleet")

        def update(done: int, total: int, t_s: float, counters: dict[str, int]) -> None:
            clock = datetime.fromtimestamp(t_s, zone).strftime("%a %H:%M")
            status = (
                f"{clock} | fallback {counters['fallback']} | violations {counters['violations']} "
                f"(compliant {counters['violations_compliant']})"
            )
            bar.update(task, completed=done, total=total, status=status)

        yield update


@contextmanager
def _work_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="gridshare-sim-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_common = [
    click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Report folder."),
    click.option("--factor", type=float, default=None, help="Override the clock's acceleration."),
    click.option("--hours", type=float, default=None, help="Override the duration (hours)."),
    click.option(
        "--powerflow",
        type=click.Choice(["linear", "ac"]),
        default=None,
        help="Override how the network is solved: the engine's linear model, or AC (pandapower).",
    ),
    click.option(
        "--work-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Keep the server's store and the PKI here (default: a temporary folder, removed after).",
    ),
]


def _options(func: Any) -> Any:
    for option in reversed(_common):
        func = option(func)
    return func


@sim_group.command("run", epilog=_EPILOG)
@click.argument("scenario_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", type=click.Choice(POLICIES), default=None, help="Override the allocation rule.")
@_options
def run_command(
    scenario_file: Path,
    policy: str | None,
    out_dir: Path | None,
    factor: float | None,
    hours: float | None,
    powerflow: str | None,
    work_dir: Path | None,
) -> None:
    """Run SCENARIO_FILE (starting or connecting to a server) and write a report."""
    from gridshare.sim.report import write_report
    from gridshare.sim.runner import run_scenario

    _quiet_libraries()
    scenario = _load(scenario_file, policy, factor, hours, powerflow)
    out_dir = out_dir or Path(f"sim-report-{scenario.name}")
    tz = scenario.network_file().network.timezone
    with _work_dir(work_dir) as wd, _progress(tz, scenario.name) as progress:
        try:
            output = run_scenario(scenario, wd, progress)
        except (ValueError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from None
    figs = write_report(output, out_dir)
    _summary(figs, out_dir)
    if not figs["validity"]["valid"]:
        raise SystemExit(EXIT_NOT_VALID)


def _summary(figs: dict[str, Any], out_dir: Path) -> None:
    t, v, vc = figs["totals"], figs["violations"], figs["violations_if_compliant"]
    _say(
        f"exported {t['exported_kwh']} kWh, curtailed {t['curtailed_kwh']} kWh by limits "
        f"({100 * t['curtailed_share']:.1f} % of available; {t['curtailed_fallback_kwh']} kWh of it by "
        f"fallback limits), {t['ramp_kwh']} kWh held back by the PV ramp-up; violations {v['count']} "
        f"(worst {v['worst_kw']} kW), {vc['count']} had every site complied; "
        f"fallback {figs['fallback']['site_hours']} site-hours"
    )
    _say(_engine_line(figs["engine"]))
    _validity(figs)
    _say(f"report: {out_dir}/")


def _say(text: str, style: str | None = None) -> None:
    """One line, never wrapped (a log or a pipe is not 80 columns) and never read as markup."""
    console.print(text, soft_wrap=True, markup=False, highlight=False, style=style)


def _engine_line(engine: dict[str, Any]) -> str:
    if not engine.get("observed"):
        return "engine: not observed (connect mode: the server recomputes on its own schedule)"
    line = (
        f"engine: {engine['published']} of {engine['recomputations']} recomputations published, "
        f"{engine['failed']} failed, {engine['skipped']} skipped"
    )
    if engine["on_fallback_s"]:
        line += f"; on fallback-valued envelopes {engine['on_fallback_s'] / 3600:.2f} h"
    return line


def _validity(figs: dict[str, Any], label: str = "") -> bool:
    """Say what is wrong with a run (its figures, or its line of a comparison); True when it is valid."""
    validity = figs["validity"]
    for warning in validity["warnings"]:
        _say(f"{label}warning: {warning}", style="yellow")
    for problem in validity["problems"]:
        _say(f"{label}NOT VALID: {problem}", style="bold red")
    return bool(validity["valid"])


@sim_group.command("compare", epilog=_EPILOG)
@click.argument("scenario_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--policies",
    default="pro-rata,tranche,lifo",
    show_default=True,
    help="Comma-separated allocation rules to run.",
)
@_options
def compare_command(
    scenario_file: Path,
    policies: str,
    out_dir: Path | None,
    factor: float | None,
    hours: float | None,
    powerflow: str | None,
    work_dir: Path | None,
) -> None:
    """Run SCENARIO_FILE once per allocation rule and tabulate curtailment per site side by side."""
    from gridshare.sim.compare import compare

    chosen = tuple(p.strip() for p in policies.split(",") if p.strip())
    unknown = [p for p in chosen if p not in POLICIES]
    if unknown:
        raise click.BadParameter(f"unknown rule(s) {', '.join(unknown)}", param_hint="'--policies'")
    _quiet_libraries()
    scenario = _load(scenario_file, None, factor, hours, powerflow)
    out_dir = out_dir or Path(f"sim-compare-{scenario.name}")
    tz = scenario.network_file().network.timezone
    with _work_dir(work_dir) as wd:
        bars: list[Any] = []

        def progress_for(policy: str) -> ProgressFn:
            if bars:
                bars.pop().__exit__(None, None, None)
            cm = _progress(tz, f"{scenario.name} [{policy}]")
            fn = cm.__enter__()
            bars.append(cm)
            return fn

        try:
            document = compare(scenario, out_dir, wd, chosen, progress_for)
        except (ValueError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            while bars:
                bars.pop().__exit__(None, None, None)
    valid = True
    for policy, s in document["summary"].items():
        _say(
            f"{policy:>9}: curtailed {s['curtailed_kwh']} kWh ({100 * s['curtailed_share']:.1f} %), "
            f"Gini {s['gini']}, worst site {100 * s['max_site_share']:.1f} %, violations {s['violations']}"
        )
        valid &= _validity(s, f"{policy:>9}: ")
    _say(f"comparison: {out_dir}/")
    if not valid:
        raise SystemExit(EXIT_NOT_VALID)
