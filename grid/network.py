"""The radial network model the envelope engine reasons about, and its validation.

A network is a tree rooted at the zone-substation transformer's source bus. Branches are
transformers or lines; each may carry a thermal rating per direction, already converted to
W (see `presets.py` for kVA/amp conversions). The whole model is in watts: the network file is
written in kW for people and `netfile.py` converts once, on the way in and on the way back out.
Validation collects every problem it finds and names each by its path in the input
(`branches[3].rating`, the file's kW field names), because a planner fixing a file wants the
whole list at once, not one error per run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from gridshare.grid.agreements import Agreement, CurtailmentGuarantee
from gridshare.grid.units import W_PER_KW

DEFAULT_V_MIN_PU = 0.94
DEFAULT_V_MAX_PU = 1.10


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located by its path (`sites[4].node`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class NetworkError(ValueError):
    """Raised with every problem found, so the whole file can be fixed in one pass."""

    def __init__(self, problems: Iterable[Problem] | Problem | str, path: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(path, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @property
    def path(self) -> str:
        """Path of the first problem: what a one-line error message should name."""
        return self.problems[0].path if self.problems else ""


@dataclass(frozen=True)
class Rating:
    """Thermal limit of one asset in each direction, in W (None = not constrained that way).

    Export = reverse flow (towards the source); import = forward flow (towards customers).
    """

    export_w: float | None
    import_w: float | None
    source: str = "explicit"  # preset name or "explicit": shown in reports so limits can be traced


@dataclass(frozen=True)
class Node:
    """A bus. `load_w`/`pv_w` are peaks of customers not modelled as sites (uncontrolled)."""

    name: str
    v_min_pu: float | None = DEFAULT_V_MIN_PU
    v_max_pu: float | None = DEFAULT_V_MAX_PU
    load_w: float = 0.0
    pv_w: float = 0.0
    load_profile: str = "residential"


@dataclass(frozen=True)
class Branch:
    """A transformer or line from `from_node` (towards the source) to `to_node`.

    `r_ohm`/`x_ohm` are per-phase ohms referred to `base_kv` (line-to-line), so each branch
    contributes (R + X tan phi) / V_base^2 per-unit voltage per watt, whatever its voltage level.
    """

    name: str
    from_node: str
    to_node: str
    r_ohm: float = 0.0
    x_ohm: float = 0.0
    base_kv: float = 12.47
    kind: str = "line"
    rating: Rating | None = None
    tranche_export_w: float | None = None
    tranche_import_w: float | None = None
    regulate_pu: float | None = None  # an on-load tap changer / regulator holds `to_node` at this voltage


@dataclass(frozen=True)
class Site:
    """A customer connection point (NMI) with its connection agreement and forecast parameters."""

    id: str
    node: str
    agreement: Agreement
    max_export_w: float
    max_import_w: float
    nmi: str | None = None
    queue_position: int | None = None
    weight: float | None = None
    pv_w: float = 0.0
    load_w: float = 0.0
    load_profile: str = "residential"
    max_step_w: float | None = None
    guarantee: CurtailmentGuarantee | None = None  # curtailment cap and compensation, if agreed


@dataclass(frozen=True)
class Topology:
    """Index structures of a validated tree, computed once and shared by every row builder."""

    node_index: dict[str, int]
    root: int
    parent_branch: np.ndarray  # (n_nodes,) branch feeding each node, -1 at the root
    on_path: np.ndarray  # (n_branches, n_nodes) bool: branch b lies between the root and node n


@dataclass(frozen=True)
class Network:
    """Nodes, branches and the few settings the linearised model needs."""

    nodes: tuple[Node, ...]
    branches: tuple[Branch, ...]
    power_factor: float = 1.0
    source_voltage_pu: float = 1.0
    timezone: str = "UTC"
    latitude_deg: float = 37.5
    longitude_deg: float = -77.4
    name: str = "network"

    @cached_property
    def topology(self) -> Topology:
        """Build the index structures; raises NetworkError if the graph is not a valid tree."""
        validate_network(self)
        return _build_topology(self)

    @cached_property
    def node_index(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.nodes)}

    @property
    def root_name(self) -> str:
        return self.nodes[self.topology.root].name

    def downstream_nodes(self, branch_name: str) -> list[str]:
        """Nodes fed through one branch: who shares its rating."""
        b = next(i for i, br in enumerate(self.branches) if br.name == branch_name)
        return [self.nodes[n].name for n in np.flatnonzero(self.topology.on_path[b])]


def _kw(value_w: float) -> float:
    """A model value (W) as the network file writes it (kW): problems name the file's fields."""
    return value_w / W_PER_KW


def _file_name(attr: str) -> str:
    """The network file's name for a model field (`max_export_w` is `max_export_kw` there)."""
    return attr[: -len("_w")] + "_kw"


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def validate_network(network: Network) -> None:
    """Check the graph is one tree fed from one root with sane electrical data.

    Raises NetworkError listing every problem; returns None when the network is usable.
    """
    problems: list[Problem] = []
    names: dict[str, int] = {}
    for i, node in enumerate(network.nodes):
        p = f"nodes[{i}]"
        if not node.name:
            problems.append(Problem(f"{p}.name", "must not be empty"))
        elif node.name in names:
            problems.append(
                Problem(f"{p}.name", f"duplicate node name {node.name!r} (also nodes[{names[node.name]}])")
            )
        else:
            names[node.name] = i
        if node.v_min_pu is not None and not (0 < node.v_min_pu < 2):
            problems.append(
                Problem(f"{p}.v_min_pu", f"must be a per-unit value in (0, 2), got {node.v_min_pu}")
            )
        if node.v_max_pu is not None and not (0 < node.v_max_pu < 2):
            problems.append(
                Problem(f"{p}.v_max_pu", f"must be a per-unit value in (0, 2), got {node.v_max_pu}")
            )
        if node.v_min_pu is not None and node.v_max_pu is not None and node.v_min_pu >= node.v_max_pu:
            problems.append(Problem(f"{p}.v_min_pu", f"must be below v_max_pu ({node.v_max_pu})"))
        for attr in ("load_w", "pv_w"):
            value = getattr(node, attr)
            if not (math.isfinite(value) and value >= 0):
                problems.append(Problem(f"{p}.{_file_name(attr)}", f"must be >= 0, got {_kw(value)}"))
    if not network.nodes:
        problems.append(Problem("nodes", "at least one node is required"))

    fed_by: dict[str, int] = {}
    branch_names: dict[str, int] = {}
    for i, br in enumerate(network.branches):
        p = f"branches[{i}]"
        if not br.name:
            problems.append(Problem(f"{p}.name", "must not be empty"))
        elif br.name in branch_names:
            problems.append(
                Problem(
                    f"{p}.name", f"duplicate branch name {br.name!r} (also branches[{branch_names[br.name]}])"
                )
            )
        else:
            branch_names[br.name] = i
        if br.from_node not in names:
            problems.append(Problem(f"{p}.from", f"unknown node {br.from_node!r}"))
        if br.to_node not in names:
            problems.append(Problem(f"{p}.to", f"unknown node {br.to_node!r}"))
        if br.from_node == br.to_node:
            problems.append(Problem(f"{p}.to", "a branch cannot connect a node to itself"))
        elif br.to_node in fed_by:
            problems.append(
                Problem(
                    f"{p}.to",
                    f"node {br.to_node!r} is already fed by branches[{fed_by[br.to_node]}]; "
                    "a radial network has one path to every node",
                )
            )
        else:
            fed_by[br.to_node] = i
        if not (math.isfinite(br.r_ohm) and br.r_ohm >= 0):
            problems.append(Problem(f"{p}.r_ohm", f"must be >= 0, got {br.r_ohm}"))
        if not (math.isfinite(br.x_ohm) and br.x_ohm >= 0):
            problems.append(Problem(f"{p}.x_ohm", f"must be >= 0, got {br.x_ohm}"))
        if not _positive(br.base_kv):
            problems.append(Problem(f"{p}.base_kv", f"must be > 0, got {br.base_kv}"))
        if br.rating is not None:
            for direction in ("export_w", "import_w"):
                value = getattr(br.rating, direction)
                if value is not None and not _positive(value):
                    problems.append(
                        Problem(f"{p}.rating.{_file_name(direction)}", f"must be > 0, got {_kw(value)}")
                    )
        if br.regulate_pu is not None and not (0.8 <= br.regulate_pu <= 1.2):
            problems.append(
                Problem(
                    f"{p}.regulate_pu", f"must be a per-unit setpoint in [0.8, 1.2], got {br.regulate_pu}"
                )
            )
        for attr in ("tranche_export_w", "tranche_import_w"):
            value = getattr(br, attr)
            if value is not None and not (math.isfinite(value) and value >= 0):
                problems.append(Problem(f"{p}.{_file_name(attr)}", f"must be >= 0, got {_kw(value)}"))

    if not (0 < network.power_factor <= 1):
        problems.append(Problem("power_factor", f"must be in (0, 1], got {network.power_factor}"))
    if not (0 < network.source_voltage_pu < 2):
        problems.append(Problem("source_voltage_pu", f"must be in (0, 2), got {network.source_voltage_pu}"))

    roots = [n for n in names if n not in fed_by]
    if names and not problems:
        if len(roots) != 1:
            if roots:
                listed = ", ".join(repr(r) for r in roots)
                problems.append(
                    Problem("nodes", f"exactly one root (a node no branch feeds) is required, found {listed}")
                )
            else:
                problems.append(Problem("branches", "every node is fed by a branch: the network has a cycle"))
        else:
            unreachable = set(names) - _reachable(roots[0], network.branches)
            for name in sorted(unreachable, key=names.__getitem__):
                problems.append(
                    Problem(
                        f"nodes[{names[name]}]",
                        f"node {name!r} is not reachable from the root {roots[0]!r} (it lies on a cycle)",
                    )
                )
    if problems:
        raise NetworkError(problems)


def _reachable(root: str, branches: Iterable[Branch]) -> set[str]:
    children: dict[str, list[str]] = {}
    for br in branches:
        children.setdefault(br.from_node, []).append(br.to_node)
    seen = {root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _build_topology(network: Network) -> Topology:
    index = {n.name: i for i, n in enumerate(network.nodes)}
    n_nodes, n_branches = len(network.nodes), len(network.branches)
    parent_branch = np.full(n_nodes, -1, dtype=int)
    for b, br in enumerate(network.branches):
        parent_branch[index[br.to_node]] = b
    root = int(np.flatnonzero(parent_branch < 0)[0])
    on_path = np.zeros((n_branches, n_nodes), dtype=bool)
    for n in range(n_nodes):
        node = n
        while parent_branch[node] >= 0:
            b = int(parent_branch[node])
            on_path[b, n] = True
            node = index[network.branches[b].from_node]
    return Topology(node_index=index, root=root, parent_branch=parent_branch, on_path=on_path)


def validate_sites(network: Network, sites: Iterable[Site]) -> None:
    """Check each site points at a real node and has coherent maxima; raise NetworkError."""
    problems: list[Problem] = []
    names = network.node_index
    seen: dict[str, int] = {}
    for i, site in enumerate(sites):
        p = f"sites[{i}]"
        if not site.id:
            problems.append(Problem(f"{p}.id", "must not be empty"))
        elif site.id in seen:
            problems.append(
                Problem(f"{p}.id", f"duplicate site id {site.id!r} (also sites[{seen[site.id]}])")
            )
        else:
            seen[site.id] = i
        if site.node not in names:
            problems.append(Problem(f"{p}.node", f"unknown node {site.node!r}"))
        for attr in ("max_export_w", "max_import_w", "pv_w", "load_w"):
            value = getattr(site, attr)
            if not (math.isfinite(value) and value >= 0):
                problems.append(Problem(f"{p}.{_file_name(attr)}", f"must be >= 0, got {_kw(value)}"))
        if site.weight is not None and not _positive(site.weight):
            problems.append(Problem(f"{p}.weight", f"must be > 0, got {site.weight}"))
        if site.queue_position is not None and site.queue_position < 0:
            problems.append(Problem(f"{p}.queue_position", f"must be >= 0, got {site.queue_position}"))
        if site.max_step_w is not None and not _positive(site.max_step_w):
            problems.append(Problem(f"{p}.max_step_kw", f"must be > 0, got {_kw(site.max_step_w)}"))
        problems.extend(
            Problem(f"{p}.agreement{'.' + sub if sub else ''}", message)
            for sub, message in site.agreement.problems(site.max_export_w, site.max_import_w)
        )
    if problems:
        raise NetworkError(problems)
