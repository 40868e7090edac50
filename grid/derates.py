"""Derates and outages applied to the network model: scaled ratings, and the sections an outage cuts off.

Pure: the store's AssetDerate rows (or anything with an asset and a factor) go in, a network comes out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from gridshare.grid.network import Network, Rating


class Derate(Protocol):
    """An operator's derate of one asset (a branch by name): its rating times `factor`, 0 an outage."""

    @property
    def asset(self) -> str: ...
    @property
    def factor(self) -> float | None: ...


def derate_factor(factor: float | None) -> float:
    """A stored derate factor as the engine applies it: within [0, 1]; unreadable means an outage (0).

    The operator API admits only 0..1; anything else in the store is damage, and the safe reading of a
    damaged derate is the most conservative one.
    """
    try:
        f = float(factor) if factor is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(f):
        return 0.0
    return min(max(f, 0.0), 1.0)


@dataclass(frozen=True)
class DeratedNetwork:
    network: Network
    #: nodes cut off by an outage: their sites may neither export nor import (anti-islanding)
    isolated_nodes: frozenset[str]


def apply_derates(network: Network, derates: Sequence[Derate]) -> DeratedNetwork:
    """Scale derated branches' ratings; an outage (factor 0) cuts its branch and everything below it.

    Several derates on one asset take the lowest factor: the most conservative operator wins. An
    isolated section carries no flow at all, so its load no longer offsets anyone's export upstream.
    """
    factors: dict[str, float] = {}
    for d in derates:
        factors[d.asset] = min(factors.get(d.asset, 1.0), derate_factor(d.factor))
    if not factors:
        return DeratedNetwork(network, frozenset())
    isolated: set[str] = set()
    for name, factor in factors.items():
        if factor == 0 and any(b.name == name for b in network.branches):
            isolated.update(network.downstream_nodes(name))
    branches = []
    for b in network.branches:
        if b.to_node in isolated:
            continue
        f = factors.get(b.name)
        if f is None or b.rating is None:
            branches.append(b)
            continue
        scaled = Rating(
            export_w=None if b.rating.export_w is None else b.rating.export_w * f,
            import_w=None if b.rating.import_w is None else b.rating.import_w * f,
            source=f"{b.rating.source} derated x{f:g}",
        )
        branches.append(replace(b, rating=scaled))
    nodes = tuple(n for n in network.nodes if n.name not in isolated)
    return DeratedNetwork(replace(network, nodes=nodes, branches=tuple(branches)), frozenset(isolated))
