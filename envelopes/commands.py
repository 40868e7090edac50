"""`gridshare envelopes ...`: compute envelopes from a network file and write CSV or JSON.

Every input problem becomes a ClickException naming the field, never a traceback: the
person running this is editing a network file, not debugging Python.

Limits are written rounded down to 0.1 W, as the server rounds them down before publishing: a limit
is a promise that a constraint holds, so it is never rounded up.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridshare.envelopes.compute import POLICIES, EnvelopeSet, compute_envelopes, next_interval_boundary
from gridshare.grid.locate import located_problems
from gridshare.grid.netfile import NetworkFile, load_network_file
from gridshare.grid.network import NetworkError

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
SITE_COLUMNS = ("site_id", "interval_start", "export_limit_w", "import_limit_w")
CONSTRAINT_COLUMNS = (
    "interval_start",
    "direction",
    "constraint",
    "kind",
    "unit",
    "rating",
    "forecast",
    "loading",
    "headroom",
    "binding",
)


def parse_duration_s(text: str, option: str) -> int:
    """`24h`, `90m`, `1h30m`, `1d`, `300s` or bare seconds (`3600`) -> whole seconds > 0."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        match = _DURATION.match(value)
        if not value or match is None:
            raise click.BadParameter(
                f"{text!r} is not a duration; use e.g. 24h, 90m, 5m or 3600", param_hint=f"'{option}'"
            )
        parts = {k: int(v) for k, v in match.groupdict(default="0").items()}
        seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    if seconds <= 0:
        raise click.BadParameter("must be longer than 0 s", param_hint=f"'{option}'")
    return seconds


def parse_start(text: str | None, interval_s: int) -> datetime:
    """ISO 8601 start (naive = UTC); default the next interval boundary from now."""
    if text is None:
        return next_interval_boundary(datetime.now(UTC), interval_s)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not ISO 8601, e.g. 2026-01-15T00:00:00Z", param_hint="'--start'"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Exit status when the envelopes were written but some floors (or fixed flows) overload a constraint.
EXIT_INFEASIBLE = 3


def _number(value: float, unit: str) -> float:
    return round(float(value), 6 if unit == "pu" else 1)


def _limit_w(value: float) -> float:
    """A site limit in W, rounded down to 0.1 W (never up: it is what the site may do)."""
    return math.floor(float(value) * 10.0) / 10.0


def site_rows(envelopes: EnvelopeSet) -> Iterator[dict[str, Any]]:
    """One row per (site, interval), sites in file order."""
    stamps = [_iso(start) for start in envelopes.interval_starts]  # once, not once per site
    for s, site_id in enumerate(envelopes.site_ids):
        for t, stamp in enumerate(stamps):
            yield {
                "site_id": site_id,
                "interval_start": stamp,
                "export_limit_w": _limit_w(envelopes.export_limit_w[t, s]),
                "import_limit_w": _limit_w(envelopes.import_limit_w[t, s]),
            }


def constraint_rows(envelopes: EnvelopeSet) -> Iterator[dict[str, Any]]:
    """One row per (interval, direction, constraint): loading with flexible sites at their limits."""
    for t, start in enumerate(envelopes.interval_starts):
        stamp = _iso(start)
        for direction, report in envelopes.constraints.items():
            for c, name in enumerate(report.names):
                unit = "W" if report.kinds[c] == "thermal" else "pu"
                yield {
                    "interval_start": stamp,
                    "direction": direction,
                    "constraint": name,
                    "kind": report.kinds[c],
                    "unit": unit,
                    "rating": _number(report.limit[c], unit),
                    "forecast": _number(report.forecast[t, c], unit),
                    "loading": _number(report.value[t, c], unit),
                    "headroom": _number(report.headroom[t, c], unit),
                    "binding": bool(report.binding[t, c]),
                }


def _write_csv(path: Path, columns: tuple[str, ...], rows: Iterator[dict[str, Any]]) -> None:
    # Rows as lists through csv.writer: DictWriter's per-row key checks dominated a year's output.
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] for row in rows)


def constraints_path(out: Path) -> Path:
    """`FILE.csv` -> `FILE.constraints.csv`, next to it."""
    return out.with_name(f"{out.stem}.constraints.csv")


def write_output(envelopes: EnvelopeSet, nf: NetworkFile, out: Path) -> list[Path]:
    """Write CSV (two files) or JSON (one document) by the extension of `out`."""
    if out.suffix.lower() == ".csv":
        _write_csv(out, SITE_COLUMNS, site_rows(envelopes))
        second = constraints_path(out)
        _write_csv(second, CONSTRAINT_COLUMNS, constraint_rows(envelopes))
        return [out, second]
    document = {
        "network": nf.network.name,
        "policy": envelopes.policy,
        "interval_s": envelopes.interval_s,
        "start": _iso(envelopes.interval_starts[0]),
        "n_intervals": envelopes.n_intervals,
        "forecast_issued_at": _iso(envelopes.forecast_issued_at),
        "envelopes": list(site_rows(envelopes)),
        "constraints": list(constraint_rows(envelopes)),
        "infeasibilities": [
            {
                "direction": i.direction,
                "interval_start": _iso(i.interval_start),
                "constraint": i.constraint,
                "excess": i.excess,
            }
            for i in envelopes.infeasibilities
        ],
    }
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return [out]


def _summary(console: Console, envelopes: EnvelopeSet, written: list[Path]) -> None:
    n_flex = int(envelopes.flexible.sum())
    first, last = envelopes.interval_starts[0], envelopes.interval_starts[-1]
    console.print(
        f"{len(envelopes.site_ids)} sites ({n_flex} dynamic), {envelopes.n_intervals} intervals of "
        f"{envelopes.interval_s} s from {_iso(first)} to {_iso(last)}, policy {envelopes.policy}"
    )
    table = Table(show_header=True, header_style="bold")
    for column in ("direction", "intervals binding", "most binding constraints"):
        table.add_column(column)
    for direction, report in envelopes.constraints.items():
        per_constraint = report.binding.sum(axis=0)
        top = np.argsort(-per_constraint)[:3]
        names = ", ".join(
            f"{report.names[c]} ({int(per_constraint[c])})" for c in top if per_constraint[c] > 0
        )
        table.add_row(direction, str(int(report.binding.any(axis=1).sum())), names or "-")
    console.print(table)
    curtailed_kwh = float(envelopes.expected_curtailment_wh()[envelopes.flexible].sum()) / 1000.0
    console.print(f"forecast export curtailed by the envelopes: {curtailed_kwh:,.1f} kWh")
    if envelopes.infeasibilities:
        first_bad = envelopes.infeasibilities[0]
        console.print(
            f"[bold red]{len(envelopes.infeasibilities)} infeasibilities[/]: floors or fixed flows alone "
            f"overload a constraint (first: {first_bad.direction} {first_bad.constraint} "
            f"at {_iso(first_bad.interval_start)})"
        )
    else:
        console.print("no infeasibilities")
    console.print("wrote " + ", ".join(str(p) for p in written))


@click.group(name="envelopes")
def envelopes_group() -> None:
    """Compute dynamic operating envelopes from a network file."""


def _network_error(path: Path, exc: NetworkError) -> click.ClickException:
    """The file named once with the line of each problem (one line for one problem, a list for several)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    # problems without a path (cannot read, invalid YAML) already name the file and the line
    lines = [str(p) for p in exc.problems if not p.path]
    lines += located_problems(str(path), text, [(p.path, p.message) for p in exc.problems if p.path])
    lines = lines or [f"{path}: {exc}"]
    if len(lines) == 1:
        return click.ClickException(lines[0])
    return click.ClickException(f"{path}: {len(lines)} problems\n" + "\n".join(f"  {x}" for x in lines))


@envelopes_group.command(
    "compute",
    epilog=(
        "\b\nExit status:\n"
        "  0  envelopes written\n"
        "  1  the network file could not be read or is invalid, or --out could not be written\n"
        "  2  a bad option\n"
        f"  {EXIT_INFEASIBLE}  envelopes written, but floors or fixed flows alone overload a constraint\n"
        "     (the infeasibilities are in the summary and in the JSON output)"
    ),
)
@click.argument("network_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default="pro-rata",
    show_default=True,
    help="How flexible sites share the headroom.",
)
@click.option(
    "--start",
    "start_text",
    default=None,
    metavar="ISO8601",
    help="First interval start (UTC if no offset). Default: the next interval boundary.",
)
@click.option("--horizon", default="24h", show_default=True, help="How far ahead: 24h, 90m or seconds.")
@click.option("--interval", default="5m", show_default=True, help="Interval length: 5m, 300 or similar.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="FILE.csv (plus FILE.constraints.csv) or FILE.json.",
)
def compute_command(
    network_file: Path, policy: str, start_text: str | None, horizon: str, interval: str, out: Path
) -> None:
    """Compute export/import limits for every site in NETWORK_FILE and write them to --out."""
    if out.suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter("must end in .csv or .json", param_hint="'--out'")
    interval_s = parse_duration_s(interval, "--interval")
    horizon_s = parse_duration_s(horizon, "--horizon")
    if horizon_s % interval_s:
        raise click.BadParameter(
            f"{horizon_s} s is not a whole number of {interval_s} s intervals", param_hint="'--horizon'"
        )
    start = parse_start(start_text, interval_s)
    console = Console()
    if not console.is_terminal:  # piped or captured: do not wrap the summary at 80 columns
        console = Console(width=max(console.width, 120))
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task(f"Loading {network_file}", total=3)
            nf = load_network_file(network_file)
            progress.update(
                task, advance=1, description=f"Computing {horizon_s // interval_s} intervals ({policy})"
            )
            envelopes = compute_envelopes(nf.network, nf.sites, start, horizon_s, interval_s, policy)
            progress.update(task, advance=1, description=f"Writing {out}")
            written = write_output(envelopes, nf, out)
            progress.update(task, advance=1)
    except NetworkError as exc:
        raise _network_error(network_file, exc) from None
    except (ValueError, KeyError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None
    _summary(console, envelopes, written)
    if envelopes.infeasibilities:
        raise SystemExit(EXIT_INFEASIBLE)
