"""Constraint reports over a whole horizon, joined from the stretches it was computed in.

The live engine splits the horizon wherever a derate starts or ends (recompute.planned_derates) and
computes each stretch on the network as it will be then, so one constraint may carry a lower rating
for a few hours, or vanish while its section is cut off. A `ConstraintSeries` keeps the rating per
interval and marks intervals where a constraint did not exist with NaN (binding False), so an operator
sees the derate exactly where it applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridshare.envelopes.compute import ConstraintReport
from gridshare.envelopes.headroom import DIRECTIONS, Direction


@dataclass(frozen=True)
class ConstraintSeries:
    """Every constraint of one direction over the horizon, in its own unit (W thermal, pu voltage)."""

    direction: Direction
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    assets: tuple[str, ...]
    rating: np.ndarray  # (n_intervals, n_constraints) rating W or voltage bound pu, NaN where absent
    forecast: np.ndarray  # (n_intervals, n_constraints) before flexible sites
    value: np.ndarray  # (n_intervals, n_constraints) with flexible sites at their limits
    headroom: np.ndarray  # (n_intervals, n_constraints) left for flexible sites
    binding: np.ndarray  # (n_intervals, n_constraints) bool

    @property
    def n_intervals(self) -> int:
        return int(self.rating.shape[0])


def join_reports(
    parts: Sequence[tuple[int, dict[Direction, ConstraintReport]]], n_intervals: int
) -> dict[Direction, ConstraintSeries]:
    """`parts` are (first interval, reports of the stretch starting there), in order, covering the horizon."""
    out: dict[Direction, ConstraintSeries] = {}
    for direction in DIRECTIONS:
        order: dict[str, tuple[str, str]] = {}
        for _, reports in parts:
            report = reports.get(direction)
            if report is None:
                continue
            for name, kind, asset in zip(report.names, report.kinds, report.assets, strict=True):
                order.setdefault(name, (kind, asset))
        if not order and not any(direction in r for _, r in parts):
            continue
        column = {name: i for i, name in enumerate(order)}
        shape = (n_intervals, len(order))
        rating, forecast, value, headroom = (np.full(shape, np.nan) for _ in range(4))
        binding = np.zeros(shape, dtype=bool)
        for first, reports in parts:
            report = reports.get(direction)
            if report is None:
                continue
            n = report.forecast.shape[0]
            rows = slice(first, first + n)
            cols = [column[name] for name in report.names]
            rating[rows, cols] = np.broadcast_to(report.limit, (n, len(cols)))
            forecast[rows, cols] = report.forecast
            value[rows, cols] = report.value
            headroom[rows, cols] = report.headroom
            binding[rows, cols] = report.binding
        out[direction] = ConstraintSeries(
            direction=direction,
            names=tuple(order),
            kinds=tuple(k for k, _ in order.values()),
            assets=tuple(a for _, a in order.values()),
            rating=rating,
            forecast=forecast,
            value=value,
            headroom=headroom,
            binding=binding,
        )
    return out
