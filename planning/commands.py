"""`gridshare plan ...`: curtailment studies from the command line, with a progress bar.

Every input problem is one line naming the file, the field and the line, and exits with its own
status (planning/errors.py: 3 network, 4 profiles, 5 candidate sites, 6 missing optional package,
7 study, 8 output; 2 is a usage error), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridshare.allocation.rules import POLICIES
from gridshare.planning.errors import PlanningError, StudyError
from gridshare.planning.yearrun import BEHAVIOURS


def _fail(exc: PlanningError) -> None:
    click.echo(f"error: {exc.located()}", err=True)
    sys.exit(exc.exit_code)


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("starting", total=1)

    def update(label: str, done: int, total: int) -> None:
        bar.update(task, description=label, completed=done, total=max(total, 1))

    with bar:
        yield update


@click.group(name="plan")
def plan_group() -> None:
    """Curtailment studies: a year per site and rule, sizing, and a report (docs/planning.md)."""


@plan_group.command("run")
@click.argument("network")
@click.option("--profiles", type=click.Path(dir_okay=False, path_type=Path), help="CSV/Parquet of shapes.")
@click.option("--candidates", type=click.Path(dir_okay=False, path_type=Path), help="CSV/YAML of new sites.")
@click.option(
    "--site", "sites", multiple=True, metavar="NODE:KW[:TECH]", help="A candidate site (repeatable)."
)
@click.option(
    "--rule", "rules", multiple=True, type=click.Choice(POLICIES), help="Allocation rule (repeatable)."
)
@click.option(
    "--behaviour",
    "behaviours",
    multiple=True,
    type=click.Choice(BEHAVIOURS),
    help="Envelope behaviour (repeatable).",
)
@click.option(
    "--margin", default=0.1, show_default=True, help="Forecast-aware margin, share of agreed capacity."
)
@click.option(
    "--interval", default=None, help="Study interval (15m, 30m, 1h); default the profiles' step or 1h."
)
@click.option(
    "--year", type=int, default=None, help="Calendar year to study (default: every whole year given)."
)
@click.option(
    "--draws", type=int, default=0, show_default=True, help="Day-resampled weather years for P10/P50/P90."
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--tranche", "tranche_at", default=None, metavar="CONSTRAINT", help="Size a tranche: thermal:<branch>."
)
@click.option("--tranche-target", default=2.5, show_default=True, help="Tranche study target, % curtailment.")
@click.option("--largest-at", default=None, metavar="NODE", help="Largest new site at NODE within --target.")
@click.option("--marginal-at", default=None, metavar="NODE", help="Curtailment of the next MW at NODE.")
@click.option(
    "--target", default=5.0, show_default=True, help="Target annual curtailment for --largest-at, %."
)
@click.option("--technology", default="pv", show_default=True, help="Technology of sizing candidates.")
@click.option(
    "--ac/--no-ac", default=False, help="AC power flow of every hour's envelopes (imported networks)."
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Report directory."
)
def run_command(network: str, out: Path, **options: Any) -> None:
    """Study NETWORK (a file, an import directory, demo, simbench:<code> or pandapower:<name>)."""
    try:
        _run(network, out, **options)
    except PlanningError as exc:
        _fail(exc)
    except (ValueError, KeyError) as exc:  # the engine refusing an input (NetworkError is a ValueError)
        _fail(StudyError(str(exc.args[0]) if exc.args else str(exc), network))


def _run(
    network: str,
    out: Path,
    *,
    profiles: Path | None,
    candidates: Path | None,
    sites: tuple[str, ...],
    rules: tuple[str, ...],
    behaviours: tuple[str, ...],
    margin: float,
    interval: str | None,
    year: int | None,
    draws: int,
    seed: int,
    tranche_at: str | None,
    tranche_target: float,
    largest_at: str | None,
    marginal_at: str | None,
    target: float,
    technology: str,
    ac: bool,
) -> None:
    from gridshare.planning.report import write_report
    from gridshare.planning.study import Study

    console = Console()
    rules = rules or ("pro-rata",)
    behaviours = behaviours or ("as-issued",)
    with _progress() as progress:
        progress(f"loading {network}", 0, 1)
        study = Study.load(
            network,
            profiles=profiles,
            candidates=candidates,
            sites=sites,
            interval=interval,
            year=year,
            draws=draws,
            seed=seed,
            margin_fraction=margin,
        )
        result = study.run(rules, behaviours, progress=progress)
        main_rule, main_behaviour = rules[0], behaviours[0]
        if tranche_at:
            result.tranche = study.tranche(
                tranche_at, tranche_target, technology=technology, progress=progress
            )
        if largest_at:
            result.largest = study.largest_site(
                largest_at,
                target,
                rule=main_rule,
                behaviour=main_behaviour,
                technology=technology,
                progress=progress,
            )
        if marginal_at:
            progress(f"next MW at {marginal_at}", 0, 2)
            result.marginal = study.marginal(
                marginal_at, rule=main_rule, behaviour=main_behaviour, technology=technology
            )
        if ac:
            if study.loaded.imported is None:
                raise PlanningError(
                    "needs an imported network (simbench:, pandapower:, a pandapower JSON or an import "
                    "directory)",
                    network,
                    "--ac",
                )
            from gridshare.planning.acpass import ac_check

            progress("AC power flow of every hour", 0, 1)
            grid = study.first_grid()
            result.ac = ac_check(study.loaded.imported, grid, result.runs[0]).summary()
        progress("writing the report", 0, 1)
        page = write_report(study, result, out)
    _summary(console, result, page)


def _summary(console: Console, result: Any, page: Path) -> None:
    table = Table(show_header=True, header_style="bold", title="Dynamic sites: annual curtailment")
    for column in ("year", "rule", "envelopes", "available MWh", "curtailed MWh", "curtailed %"):
        table.add_column(column)
    totals = result.totals[result.totals["group"] == "dynamic sites"]
    for r in totals.itertuples():
        table.add_row(
            str(r.year),
            r.rule,
            r.behaviour,
            f"{r.energy_available_mwh:,.0f}",
            f"{r.energy_curtailed_mwh:,.1f}",
            f"{r.curtailed_pct:.2f}",
        )
    console.print(table)
    if result.ac is not None:
        console.print(
            f"AC check: {result.ac['intervals_with_violation']} intervals beyond a bound by more than "
            f"{result.ac['tolerance_pct']:g} % ({result.ac['hours_solved']:,} hours each way)"
        )
    t = result.timings_s
    console.print(
        f"engine {t.get('engine_s', 0):.1f} s, metrics {t.get('metrics_s', 0):.1f} s; report: {page}"
    )


@plan_group.command("import")
@click.argument("source")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--sites",
    "site_choice",
    type=click.Choice(["sgen", "none"]),
    default="sgen",
    show_default=True,
    help="Static generators become dynamic sites (sgen) or background (none).",
)
@click.option("--power-factor", default=0.95, show_default=True, help="Converts kVA and amp ratings to kW.")
def import_command(source: str, out: Path, site_choice: str, power_factor: float) -> None:
    """Import SOURCE (simbench:<code>, pandapower:<name> or a pandapower JSON) into OUT as a network
    file, profiles and the pandapower model for the AC check."""
    from gridshare.planning.inputs import load_network, write_import_dir

    try:
        with _progress() as progress:
            progress(f"importing {source}", 0, 2)
            loaded = load_network(
                source, sites="sgen" if site_choice == "sgen" else "none", power_factor=power_factor
            )
            progress(f"writing {out}", 1, 2)
            written = write_import_dir(loaded, out)
    except PlanningError as exc:
        _fail(exc)
        return
    net = loaded.nf.network
    click.echo(
        f"{net.name}: {len(net.nodes)} nodes, {len(net.branches)} branches, {len(loaded.nf.sites)} sites"
        + (f", {len(loaded.profiles)} profile steps of {loaded.profiles.step_s} s" if loaded.profiles else "")
    )
    for note in loaded.notes:
        click.echo(f"note: {note}")
    click.echo("wrote " + ", ".join(str(p) for p in written))
