"""Dynamic envelopes with each derate applied only to the intervals it covers.

A derate or outage an operator schedules for later must not curtail the envelopes from now (every
site behind the asset would lose hours of export for nothing), nor be ignored until it starts (the
envelopes already published for its intervals would overload the asset). The horizon is split where
the set of derates in force changes, each stretch is computed on the network as it will be then,
and the stretches are joined into one envelope set.

A derate counts for an interval if it covers any part of it: an outage from 10:02 takes the whole
10:00-10:05 interval (rounded outwards, the safe way). Fallback limits are not computed this way:
they count every derate in force or scheduled, since a device may sit on its default through the
start of a planned outage (docs/fallback.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from gridshare.envelopes.compute import EnvelopeInfeasibility, EnvelopeSet, compute_envelopes
from gridshare.envelopes.constraint_series import ConstraintSeries, join_reports
from gridshare.envelopes.forecast import Forecast
from gridshare.envelopes.headroom import Direction
from gridshare.grid.derates import Derate, apply_derates
from gridshare.grid.netfile import NetworkFile


class PlannedDerate(Derate, Protocol):
    """A derate with the period it covers (`until_s` None: until cleared); the store's rows have these."""

    @property
    def from_s(self) -> int: ...
    @property
    def until_s(self) -> int | None: ...


@dataclass(frozen=True)
class Stretch:
    """Consecutive intervals (`first`, `first + n`) with the same derates in force."""

    first: int
    n: int
    derates: tuple[PlannedDerate, ...]


@dataclass(frozen=True)
class PlannedEnvelopes:
    envelopes: EnvelopeSet  # a column for every site not cut off over the whole horizon
    binding: dict[str, int]  # (interval, constraint) pairs that bind, per direction, all stretches
    isolated_now: frozenset[str]  # nodes behind an outage in the first interval
    isolated_throughout: frozenset[str]  # nodes behind an outage in every interval (no column)
    #: every constraint over the whole horizon, each stretch with its own ratings (for operators)
    series: dict[Direction, ConstraintSeries]


def stretches(
    derates: Sequence[PlannedDerate], start_s: int, n_intervals: int, interval_s: int
) -> list[Stretch]:
    """Split `n_intervals` from `start_s` wherever the derates covering an interval change."""
    if n_intervals <= 0:
        return []
    epochs = start_s + interval_s * np.arange(n_intervals, dtype=np.int64)
    covers = np.zeros((len(derates), n_intervals), dtype=bool)
    for i, d in enumerate(derates):
        until = np.iinfo(np.int64).max if d.until_s is None else d.until_s
        covers[i] = (d.from_s < epochs + interval_s) & (until > epochs)
    change: np.ndarray | list[int] = (
        np.flatnonzero(np.any(covers[:, 1:] != covers[:, :-1], axis=0)) + 1 if len(derates) else []
    )
    bounds = [0, *map(int, change), n_intervals]
    return [
        Stretch(a, b - a, tuple(d for i, d in enumerate(derates) if covers[i, a]))
        for a, b in itertools.pairwise(bounds)
    ]


def compute_planned(
    nf: NetworkFile,
    derates: Sequence[PlannedDerate],
    start: datetime,
    horizon_s: int,
    interval_s: int,
    policy: str,
    forecasts: Forecast | None,
    engine: Callable[..., EnvelopeSet] = compute_envelopes,
    forecast_margin_fraction: float | None = None,
    minimum_w: Mapping[str, tuple[float, float]] | None = None,
) -> PlannedEnvelopes:
    """Envelopes over the horizon, each stretch on the network with that stretch's derates applied.

    With one stretch (no derate starts or ends within the horizon, the usual case) this is exactly one
    `engine` (`compute_envelopes`) call. Sites behind an outage in a stretch get zero both ways there.
    """
    start_s = int(start.timestamp())
    parts = stretches(derates, start_s, horizon_s // interval_s, interval_s)
    computed: list[tuple[Stretch, frozenset[str], EnvelopeSet]] = []
    for part in parts:
        derated = apply_derates(nf.network, list(part.derates))
        live = [s for s in nf.sites if s.node not in derated.isolated_nodes]
        env = engine(
            derated.network,
            live,
            datetime.fromtimestamp(start_s + part.first * interval_s, UTC),
            part.n * interval_s,
            interval_s,
            policy,
            forecasts,
            forecast_margin_fraction=forecast_margin_fraction,
            minimum_w=minimum_w,
        )
        computed.append((part, derated.isolated_nodes, env))
    isolated_now = computed[0][1]
    throughout = frozenset.intersection(*(iso for _, iso, _ in computed))
    binding = {d: sum(env.binding_count(d) for _, _, env in computed) for d in ("export", "import")}
    series = join_reports(
        [(part.first, env.constraints) for part, _, env in computed], sum(p.n for p in parts)
    )
    if len(computed) == 1:
        return PlannedEnvelopes(computed[0][2], binding, isolated_now, throughout, series)
    sites = [s for s in nf.sites if s.node not in throughout]
    column = {s.id: j for j, s in enumerate(sites)}
    n = horizon_s // interval_s
    export, imp, forecast = (np.zeros((n, len(sites))) for _ in range(3))
    infeasible: list[EnvelopeInfeasibility] = []
    for part, _, env in computed:
        rows = slice(part.first, part.first + part.n)
        cols = [column[i] for i in env.site_ids]
        export[rows, cols] = env.export_limit_w
        imp[rows, cols] = env.import_limit_w
        forecast[rows, cols] = env.forecast_export_w
        infeasible.extend(env.infeasibilities)
    joined = EnvelopeSet(
        site_ids=tuple(s.id for s in sites),
        flexible=np.array([s.agreement.flexible for s in sites], dtype=bool),
        interval_starts=tuple(t for _, _, env in computed for t in env.interval_starts),
        interval_s=interval_s,
        policy=policy,
        export_limit_w=export,
        import_limit_w=imp,
        forecast_export_w=forecast,
        constraints={},  # constraint sets differ between stretches; `binding` sums them
        infeasibilities=tuple(infeasible),
        forecast_issued_at=computed[0][2].forecast_issued_at,
        forecast_margin_fraction=forecast_margin_fraction,
        minimum_not_carried=tuple(x for _, _, env in computed for x in env.minimum_not_carried),
        minimum_raised={
            d: sum(env.minimum_raised.get(d, 0) for _, _, env in computed) for d in ("export", "import")
        },
    )
    return PlannedEnvelopes(joined, binding, isolated_now, throughout, series)
