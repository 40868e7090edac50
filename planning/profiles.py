"""Profiles for a study: shapes (share of a peak) on a uniform time grid, and the forecast they make.

A table has a `time` column and one column per shape. Every value is a share of a peak given
elsewhere (a site's or node's `pv_w` / `load_w`), so one table serves any size of site:

* `pv`: the PV shape of every site and node without one of its own (also the default technology
  of candidate sites); any other technology is a column of its name (`wind`, `hydro`, ...);
* a load profile name (`residential`, `commercial`, `flat` or your own): the load shape of every
  site and node whose `load_profile` it is;
* `pv:<id>` / `load:<id>`: the own generation or load shape of one site (`<id>` = its id) or of a
  node's customers who are not sites (`node:<name>`), e.g. a SimBench element or a simulator run.

Shapes the table lacks are the engine's built-in ones (`envelopes/forecast.py`: clear-sky PV at
1.0 on a midsummer noon, the residential/commercial/flat load shapes), and the report says which
ids used which. Times in ISO 8601; without an offset they are the network's local time (a series
in local wall-clock time across a DST change needs offsets). 15-, 30- and 60-minute steps are
typical; any uniform step works and coarser study intervals average it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gridshare.envelopes.forecast import LOAD_SHAPES, Forecast, load_shape, pv_shape
from gridshare.grid.localtime import local_fractional_hours, local_seconds
from gridshare.grid.network import Network, Site
from gridshare.planning.errors import MissingDependency, ProfileError

#: A share above this is a unit mistake (kW or W instead of a share of the peak); noisy loads reach 2.
MAX_SHARE = 2.0
TIME_COLUMN = "time"
BUILTIN = "built-in"


@dataclass(frozen=True)
class ProfileTable:
    """Shapes on a uniform grid of interval starts (UTC epoch seconds)."""

    epoch_s: np.ndarray  # (n,) int64
    step_s: int
    shapes: Mapping[str, np.ndarray]  # column -> (n,) share of peak
    source: str = "profiles"

    def __post_init__(self) -> None:
        if len(self.epoch_s) > 1 and np.any(np.diff(self.epoch_s) != self.step_s):
            raise ValueError(f"{self.source}: interval starts are not {self.step_s} s apart throughout")
        for name, values in self.shapes.items():
            if np.shape(values) != np.shape(self.epoch_s):
                raise ValueError(
                    f"shape {name!r} has {np.shape(values)} values for {len(self.epoch_s)} times"
                )

    def __len__(self) -> int:
        return len(self.epoch_s)

    @property
    def start_s(self) -> int:
        return int(self.epoch_s[0])

    @property
    def end_s(self) -> int:
        return int(self.epoch_s[-1]) + self.step_s

    def on_grid(self, start_s: int, n: int, interval_s: int) -> ProfileTable:
        """The table over `n` intervals of `interval_s` from `start_s`, averaging whole steps.

        Raises ProfileError when the grid does not fit the table (not covered, or not whole steps).
        """
        if interval_s % self.step_s:
            raise ProfileError(
                f"the study interval ({interval_s} s) must be a whole number of the table's steps "
                f"({self.step_s} s)",
                self.source,
                TIME_COLUMN,
            )
        if (start_s - self.start_s) % self.step_s:
            raise ProfileError(
                f"the study does not start on one of the table's steps ({self.step_s} s)", self.source
            )
        end_s = start_s + n * interval_s
        if start_s < self.start_s or end_s > self.end_s:
            raise ProfileError(
                f"the table covers {_iso(self.start_s)} to {_iso(self.end_s)}, the study "
                f"{_iso(start_s)} to {_iso(end_s)}",
                self.source,
                TIME_COLUMN,
            )
        first = (start_s - self.start_s) // self.step_s
        k = interval_s // self.step_s
        rows = slice(first, first + n * k)
        shapes = {
            name: values[rows].reshape(n, k).mean(axis=1) if k > 1 else values[rows].copy()
            for name, values in self.shapes.items()
        }
        epochs = start_s + interval_s * np.arange(n, dtype=np.int64)
        return ProfileTable(epochs, interval_s, shapes, self.source)


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _pandas():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd


def read_profile_table(path: str | Path, tz: str) -> ProfileTable:
    """Read a CSV or Parquet table; every problem is a ProfileError naming the file, column and line."""
    pd = _pandas()
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ProfileError("no such file", name)
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            try:
                frame = pd.read_parquet(path)
            except ImportError as exc:
                raise MissingDependency(
                    "reading Parquet needs pyarrow: pip install 'gridshare[planning]'", name
                ) from exc
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot be read as {'Parquet' if parquet else 'CSV'}: {exc}", name) from None
    return table_from_frame(
        frame, tz, name, first_line=1 if parquet else 2, row_word="row" if parquet else "line"
    )


def table_from_frame(
    frame: Any, tz: str, source: str, first_line: int = 2, row_word: str = "line"
) -> ProfileTable:
    """Validate a DataFrame with a `time` column and share columns into a ProfileTable."""
    pd = _pandas()
    columns = [str(c).strip() for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if TIME_COLUMN not in columns:
        raise ProfileError(
            f"no {TIME_COLUMN!r} column (columns: {', '.join(columns[:8]) or 'none'})", source, TIME_COLUMN
        )
    shape_columns = [c for c in columns if c != TIME_COLUMN]
    if not shape_columns:
        raise ProfileError("no shape columns besides the time", source)
    dupes = [c for c, k in Counter(columns).items() if k > 1]
    if dupes:
        raise ProfileError("the column appears twice", source, dupes[0])
    if len(frame) < 2:
        raise ProfileError(f"needs at least two rows, has {len(frame)}", source)

    raw_time = frame[TIME_COLUMN]
    try:
        parsed = pd.to_datetime(raw_time.astype(str).str.strip(), format="ISO8601", utc=False)
    except (ValueError, TypeError):
        parsed = pd.to_datetime(
            raw_time.astype(str).str.strip(), format="ISO8601", errors="coerce", utc=False
        )
    if getattr(parsed.dt, "tz", None) is None:
        bad = parsed.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise (
                ProfileError(
                    f"{raw_time.iloc[i]!r} is not an ISO 8601 time", source, TIME_COLUMN, first_line + i
                )
                if row_word == "line"
                else ProfileError(
                    f"row {i}: {raw_time.iloc[i]!r} is not an ISO 8601 time", source, TIME_COLUMN
                )
            )
        naive_s = parsed.to_numpy(dtype="datetime64[s]").astype(np.int64)
        epoch = _naive_local_to_utc(naive_s, tz)
    else:
        epoch = (
            parsed.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[s]").astype(np.int64)
        )
    steps = np.diff(epoch)
    step = int(steps[0])
    if step <= 0 or np.any(steps != step):
        i = int(np.flatnonzero(steps != step)[0]) + 1 if step > 0 else 1
        raise _located(
            f"{raw_time.iloc[i]!r} is {int(epoch[i] - epoch[i - 1])} s after the previous row; the table "
            f"needs one uniform, increasing step ({step} s from its first rows). Naive local times across "
            "a DST change are not uniform: give UTC offsets",
            source,
            TIME_COLUMN,
            first_line,
            i,
            row_word,
        )
    shapes: dict[str, np.ndarray] = {}
    for column in shape_columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _located(
                f"{frame[column].iloc[i]!r} is not a number", source, column, first_line, i, row_word
            )
        out = (values < 0) | (values > MAX_SHARE)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise _located(
                f"{values[i]:g} is outside [0, {MAX_SHARE:g}]: values are shares of the peak, not kW or W",
                source,
                column,
                first_line,
                i,
                row_word,
            )
        shapes[column] = values
    return ProfileTable(epoch, step, shapes, source)


def _located(message: str, source: str, column: str, first_line: int, i: int, row_word: str) -> ProfileError:
    if row_word == "line":
        return ProfileError(message, source, column, first_line + i)
    return ProfileError(f"row {i}: {message}", source, column)


def _naive_local_to_utc(naive_s: np.ndarray, tz: str) -> np.ndarray:
    """Wall-clock seconds in `tz` -> UTC epoch (the offset of the wall time read as UTC, corrected once)."""
    guess = naive_s - (local_seconds(naive_s, tz) - naive_s)
    return naive_s - (local_seconds(guess, tz) - guess)


# ------------------------------------------------------------------------------------------ draws


def bootstrap_days(table: ProfileTable, tz: str, n_draws: int, seed: int = 1) -> list[ProfileTable]:
    """`n_draws` weather years made by resampling whole local days within their calendar month.

    Every column moves together (a day's sun, wind and load stay one day), so spatial correlation is
    kept; only the order of days within each month changes. A stand-in for more recorded years.
    """
    if n_draws < 1:
        return []
    if 86400 % table.step_s:
        raise ProfileError(
            f"day resampling needs a step that divides a day, not {table.step_s} s", table.source
        )
    per_day = 86400 // table.step_s
    local = local_seconds(table.epoch_s, tz)
    day = local // 86400
    first_full = np.flatnonzero(local % 86400 == 0)
    if not len(first_full):
        raise ProfileError("day resampling needs the table to contain a local midnight", table.source)
    start = int(first_full[0])
    n_days = (len(table) - start) // per_day
    if n_days < 28:
        raise ProfileError("day resampling needs at least four weeks of profiles", table.source)
    day_ids = day[start : start + n_days * per_day : per_day]
    months = day_ids.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    pools = {int(m): np.flatnonzero(months == m) for m in np.unique(months)}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_draws):
        chosen = np.array([rng.choice(pools[int(m)]) for m in months])
        rows = np.arange(len(table))
        body = (start + chosen[:, None] * per_day + np.arange(per_day)[None, :]).ravel()
        rows[start : start + n_days * per_day] = body
        draws.append(
            ProfileTable(
                table.epoch_s,
                table.step_s,
                {k: v[rows] for k, v in table.shapes.items()},
                f"{table.source} (day-resampled)",
            )
        )
    return draws


# --------------------------------------------------------------------------------------- forecasts


@dataclass
class ProfileUse:
    """Which shape each id used, for the report's assumptions."""

    generation: dict[str, str] = field(default_factory=dict)  # id -> shape description
    load: dict[str, str] = field(default_factory=dict)
    unused_columns: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """One line per (kind, source) with how many ids used it."""
        lines = []
        for kind, used in (("generation", self.generation), ("load", self.load)):
            for source, count in sorted(Counter(used.values()).items()):
                lines.append(f"{kind}: {source} ({count} {'id' if count == 1 else 'ids'})")
        if self.unused_columns:
            lines.append("columns not used by any site or node: " + ", ".join(self.unused_columns[:10]))
        return lines


@dataclass(frozen=True)
class Peaks:
    """What one id draws its series from: peaks in W and the names of its shapes."""

    pv_w: float
    load_w: float
    generation_shape: str = "pv"
    load_shape: str = "residential"


def study_peaks(
    network: Network, sites: Sequence[Site], technology: Mapping[str, str] | None = None
) -> dict[str, Peaks]:
    """Peaks of every site (by id) and every node's other customers (`node:<name>`)."""
    technology = technology or {}
    out = {s.id: Peaks(s.pv_w, s.load_w, technology.get(s.id, "pv"), s.load_profile) for s in sites}
    for node in network.nodes:
        out[f"node:{node.name}"] = Peaks(node.pv_w, node.load_w, "pv", node.load_profile)
    return out


def study_forecast(
    network: Network,
    peaks: Mapping[str, Peaks],
    epoch_s: np.ndarray,
    interval_s: int,
    table: ProfileTable | None,
) -> tuple[Forecast, ProfileUse]:
    """Load and generation of every id on the study grid: its own columns, shared shapes, or built-in.

    `table` must already be on the grid (`ProfileTable.on_grid`). Raises ProfileError for a
    technology or load profile that neither the table nor the built-in shapes have.
    """
    n = len(epoch_s)
    mids = np.asarray(epoch_s, dtype=np.int64) + interval_s // 2
    builtin_cache: dict[str, np.ndarray] = {}
    shapes = dict(table.shapes) if table is not None else {}
    source = table.source if table is not None else ""
    used: set[str] = set()
    use = ProfileUse()

    def builtin(kind: str, name: str) -> np.ndarray:
        key = f"{kind}:{name}"
        if key not in builtin_cache:
            if kind == "generation":
                builtin_cache[key] = pv_shape(mids, network.latitude_deg, network.longitude_deg)
            else:
                builtin_cache[key] = load_shape(local_fractional_hours(mids, network.timezone), name)
        return builtin_cache[key]

    def pick(ident: str, kind: str, own: str, shared: str) -> tuple[np.ndarray, str]:
        for column in (own, shared):
            if column in shapes:
                used.add(column)
                label = own.split(":", 1)[0] + ":<id>" if column == own else repr(column)
                return shapes[column], f"{source} column {label}"
        if kind == "generation" and shared == "pv":
            return builtin(kind, shared), f"{BUILTIN} clear-sky PV shape"
        if kind == "load" and shared in LOAD_SHAPES:
            return builtin(kind, shared), f"{BUILTIN} {shared} load shape"
        what = "technology" if kind == "generation" else "load profile"
        raise ProfileError(
            f"{ident}: no profile for {what} {shared!r}: give a column {shared!r} or {own!r}"
            + (f" in {source}" if source else " (no profile table was given)"),
            source or None,
            shared,
        )

    ids = tuple(peaks)
    load_w = np.zeros((n, len(ids)))
    gen_w = np.zeros((n, len(ids)))
    for j, ident in enumerate(ids):
        p = peaks[ident]
        if p.pv_w > 0:
            shape, how = pick(ident, "generation", f"pv:{ident}", p.generation_shape)
            gen_w[:, j] = p.pv_w * shape
            use.generation[ident] = how
        if p.load_w > 0:
            shape, how = pick(ident, "load", f"load:{ident}", p.load_shape)
            load_w[:, j] = p.load_w * shape
            use.load[ident] = how
    use.unused_columns = sorted(set(shapes) - used)
    issued = datetime.fromtimestamp(int(epoch_s[0]), UTC) if n else datetime.now(UTC)
    forecast = Forecast(issued, issued, interval_s, ids, load_w, gen_w)
    return forecast, use


def unknown_own_columns(table: ProfileTable, peaks: Mapping[str, Peaks]) -> list[str]:
    """`pv:<id>`/`load:<id>` columns naming no site or node: almost always a typo in an id."""
    return [
        c
        for c in table.shapes
        if (c.startswith("pv:") or c.startswith("load:")) and c.split(":", 1)[1] not in peaks
    ]


def whole_years(table: ProfileTable, tz: str) -> list[tuple[int, int, int]]:
    """(year, start epoch, n steps) of every whole local calendar year the table covers."""
    local = local_seconds(table.epoch_s, tz)
    years = np.unique(local.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970)
    out = []
    for year in years:
        start = _local_midnight_jan1(int(year), tz)
        end = _local_midnight_jan1(int(year) + 1, tz)
        if start >= table.start_s and end <= table.end_s and (start - table.start_s) % table.step_s == 0:
            out.append((int(year), start, (end - start) // table.step_s))
    return out


def _local_midnight_jan1(year: int, tz: str) -> int:
    naive = np.array(
        [int((np.datetime64(f"{year:04d}-01-01T00:00:00") - np.datetime64(0, "s")).astype(np.int64))]
    )
    return int(_naive_local_to_utc(naive, tz)[0])


def local_year_start_s(year: int, tz: str) -> int:
    """UTC epoch of 1 January 00:00 local time of `year`."""
    return _local_midnight_jan1(year, tz)
