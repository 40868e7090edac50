"""The physics check: an AC power flow of every hour's envelopes on the imported pandapower model.

The engine plans on a linearised model of the network the importer built; this solves the original
pandapower network (its lines with charging, its transformers with magnetising branch and
impedance) with every site at its envelope and every node's other customers at their profile:

* export case: dynamic sites at their export limits, fixed sites at their agreed export;
* import case: every site importing at its import limit.

Each node's net injection P goes in at its bus with Q = P tan(phi) at the network's power factor
(the engine's own assumption, so the difference measured is the linearisation's). Loads,
generators and storage of the file are switched off (their profiles are the background already);
a transformer the engine treats as a regulator (`regulate_pu`, SimBench's automatic tap control) is
an ideal one: its low-voltage bus is held at the set point and its loading is what it then carries.

The year's hours are solved together by a fixed-point (Z-bus) iteration on pandapower's own
admittance matrix, V = Y_LL^-1 (conj(S / V) - Y_LS V_S), which converges in a few steps on
distribution networks; a few hours are cross-checked against `pandapower.runpp` and the largest
difference is reported. A value beyond a rating (pandapower's loading_percent over
max_loading_percent) or a bus voltage beyond its bound by more than `tolerance` (1 %) is a
violation.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse.linalg as spla

from gridshare.grid.network import Network
from gridshare.planning.errors import StudyError
from gridshare.planning.import_pandapower import ImportedNetwork, require_pandapower
from gridshare.planning.yearrun import StudyGrid, YearRun

MAX_ITERATIONS = 60
CONVERGED_PU = 1e-9
BASE_KV_COLUMN = 9  # ppc bus table: BASE_KV


@dataclass
class AcCheck:
    """Counts and the intervals in violation, for the report."""

    hours: int
    solves: int
    violations: pd.DataFrame  # one row per (interval, case, element) beyond tolerance
    intervals_violating: int
    intervals_beyond_bound: int  # with no tolerance: how often AC is above a bound at all
    worst_excess_pct: float  # the largest excess beyond any bound, % of that bound
    not_converged: int
    worst_loading_pct: float
    worst_v_max_pu: float
    worst_v_min_pu: float
    cross_check_max_dv_pu: float
    seconds: float
    tolerance: float

    def summary(self) -> dict[str, Any]:
        return {
            "hours_solved": self.hours,
            "solves": self.solves,
            "intervals_with_violation": self.intervals_violating,
            "intervals_beyond_a_bound_at_all": self.intervals_beyond_bound,
            "worst_excess_pct": round(self.worst_excess_pct, 3),
            "violation_count": len(self.violations),
            "not_converged": self.not_converged,
            "worst_loading_pct": round(self.worst_loading_pct, 2),
            "highest_voltage_pu": round(self.worst_v_max_pu, 4),
            "lowest_voltage_pu": round(self.worst_v_min_pu, 4),
            "cross_check_max_dv_pu": self.cross_check_max_dv_pu,
            "seconds": round(self.seconds, 1),
            "tolerance_pct": 100 * self.tolerance,
            "violations": self.violations,
        }


class _Model:
    """The pandapower net prepared once: admittances, where each node injects, what to check."""

    def __init__(self, imported: ImportedNetwork, network: Network) -> None:
        pp = require_pandapower()
        self.pp = pp
        net = copy.deepcopy(imported.net)
        for table in ("load", "sgen", "storage", "gen", "ward", "xward"):
            if table in net and len(net[table]):
                net[table]["in_service"] = False
        self.regulated: list[tuple[str, list[int], int, float]] = []  # branch, trafos, lv bus, setpoint
        for branch in network.branches:
            if branch.regulate_pu is None:
                continue
            trafos = [
                int(i) for table, i in imported.branch_elements.get(branch.name, []) if table == "trafo"
            ]
            if not trafos:
                continue
            lv = int(net.trafo.at[trafos[0], "lv_bus"])
            net.trafo.loc[trafos, "in_service"] = False
            pp.create_ext_grid(net, lv, vm_pu=branch.regulate_pu, name=f"gridshare:regulator:{branch.name}")
            self.regulated.append((branch.name, trafos, lv, branch.regulate_pu))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False, calculate_voltage_angles=True)
        self.net = net
        internal = net._ppc["internal"]
        self.base_mva = float(net._ppc["baseMVA"])
        self.ybus = internal["Ybus"].tocsc()
        self.yf, self.yt = internal["Yf"].tocsr(), internal["Yt"].tocsr()
        self.ref = np.asarray(internal["ref"], dtype=int)
        if len(internal["pv"]):
            raise StudyError(
                "the AC check does not handle voltage-controlled generators", imported.source, "gen"
            )
        n = self.ybus.shape[0]
        self.other = np.setdiff1d(np.arange(n), self.ref)
        self.v_ref = np.asarray(internal["V"])[self.ref]
        self.v0 = np.asarray(internal["V"])
        self.base_kv = np.asarray(internal["bus"])[:, BASE_KV_COLUMN].real.astype(float)
        lookup = net._pd2ppc_lookups["bus"]
        nodes = network.topology.node_index
        self.node_bus = np.full(len(network.nodes), -1, dtype=int)
        for name, buses in imported.node_buses.items():
            if name in nodes and buses:
                self.node_bus[nodes[name]] = int(lookup[int(buses[0])])
        self.tan_phi = math.tan(math.acos(network.power_factor))
        y_oo = self.ybus[self.other][:, self.other].tocsc()
        self.y_or = self.ybus[self.other][:, self.ref]
        self.lu = spla.splu(y_oo)
        # voltage bounds per ppc bus from the engine nodes (the importer took them from the file)
        self.v_min = np.full(n, np.nan)
        self.v_max = np.full(n, np.nan)
        for idx in nodes.values():
            bus = self.node_bus[idx]
            spec = network.nodes[idx]
            if bus >= 0 and bus not in set(self.ref.tolist()):
                self.v_min[bus] = spec.v_min_pu if spec.v_min_pu is not None else np.nan
                self.v_max[bus] = spec.v_max_pu if spec.v_max_pu is not None else np.nan
        self.bus_names = {int(lookup[int(b)]): name for name, bs in imported.node_buses.items() for b in bs}
        self._thermal(imported)

    def _thermal(self, imported: ImportedNetwork) -> None:
        """Per in-service line and transformer: its ppc branch row and rated current at each end."""
        net = self.net
        rows, names, rated_f, rated_t, limit = [], [], [], [], []
        start, _ = net._pd2ppc_lookups["branch"].get("line", (0, 0))
        for k, (_, ln) in enumerate(net.line.iterrows()):
            if not bool(ln["in_service"]):
                continue
            rated = float(ln["max_i_ka"]) * float(ln.get("df", 1.0)) * float(ln.get("parallel", 1))
            rows.append(start + k)
            names.append(f"line {ln['name']}")
            rated_f.append(rated)
            rated_t.append(rated)
            limit.append(_percent(ln.get("max_loading_percent", 100.0)))
        t_start, _ = net._pd2ppc_lookups["branch"].get("trafo", (0, 0))
        for k, (_, tr) in enumerate(net.trafo.iterrows()):
            if not bool(tr["in_service"]):
                continue
            scale = float(tr.get("df", 1.0)) * float(tr.get("parallel", 1))
            rows.append(t_start + k)
            names.append(f"trafo {tr['name']}")
            rated_f.append(float(tr["sn_mva"]) / (math.sqrt(3) * float(tr["vn_hv_kv"])) * scale)
            rated_t.append(float(tr["sn_mva"]) / (math.sqrt(3) * float(tr["vn_lv_kv"])) * scale)
            limit.append(_percent(tr.get("max_loading_percent", 100.0)))
        self.rows = np.asarray(rows, dtype=int)
        self.element_names = names
        self.rated_f = np.asarray(rated_f)
        self.rated_t = np.asarray(rated_t)
        self.limit_pct = np.asarray(limit)
        branch = np.asarray(net._ppc["internal"]["branch"])
        self.f_bus = branch[self.rows, 0].real.astype(int) if len(self.rows) else np.zeros(0, dtype=int)
        self.t_bus = branch[self.rows, 1].real.astype(int) if len(self.rows) else np.zeros(0, dtype=int)
        # regulators: rated current at the low-voltage side (the ext_grid that stands in for them)
        self.reg_names, self.reg_bus, self.reg_rated_mva, self.reg_limit = [], [], [], []
        lookup = net._pd2ppc_lookups["bus"]
        for name, trafos, lv, _ in self.regulated:
            rated = sum(
                float(net.trafo.at[i, "sn_mva"])
                * float(net.trafo.at[i, "df"])
                * float(net.trafo.at[i, "parallel"])
                for i in trafos
            )
            self.reg_names.append(f"trafo {name}")
            self.reg_bus.append(int(lookup[lv]))
            self.reg_rated_mva.append(rated)
            self.reg_limit.append(_percent(net.trafo.at[trafos[0], "max_loading_percent"]))

    def solve(self, injection_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(V (n_bus, T) complex, converged (T,) bool) for node injections (T, n_nodes) in W."""
        n_bus = self.ybus.shape[0]
        n_t = injection_w.shape[0]
        s = np.zeros((n_bus, n_t), dtype=complex)
        mapped = self.node_bus >= 0
        p = injection_w[:, mapped].T / (self.base_mva * 1e6)
        np.add.at(s, self.node_bus[mapped], p * (1 + 1j * self.tan_phi))
        v = np.repeat(self.v0[:, None], n_t, axis=1)
        v[self.ref] = self.v_ref[:, None]
        fixed = self.y_or @ v[self.ref]
        s_o = s[self.other]
        converged = np.zeros(n_t, dtype=bool)
        for _ in range(MAX_ITERATIONS):
            v_o = v[self.other]
            new = self.lu.solve(np.conj(s_o / v_o) - fixed)
            step = np.abs(new - v_o).max(axis=0)
            v[self.other] = new
            converged = step < CONVERGED_PU
            if converged.all():
                break
        return v, converged & np.isfinite(v).all(axis=0)

    def loading(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(loading % per element (E, T), limit % per element (E,)): lines, trafos, then regulators."""
        parts, limits = [], []
        if len(self.rows):
            i_f = (
                np.abs(self.yf[self.rows] @ v)
                * self.base_mva
                / (math.sqrt(3) * self.base_kv[self.f_bus])[:, None]
            )
            i_t = (
                np.abs(self.yt[self.rows] @ v)
                * self.base_mva
                / (math.sqrt(3) * self.base_kv[self.t_bus])[:, None]
            )
            parts.append(100 * np.maximum(i_f / self.rated_f[:, None], i_t / self.rated_t[:, None]))
            limits.append(self.limit_pct)
        if self.reg_bus:
            buses = np.asarray(self.reg_bus)
            drawn = v[buses] * np.conj(self.ybus[buses] @ v)  # pu power leaving the regulator into the zone
            mva = np.abs(drawn) * self.base_mva / np.abs(v[buses])
            parts.append(100 * mva / np.asarray(self.reg_rated_mva)[:, None])
            limits.append(np.asarray(self.reg_limit))
        if not parts:
            return np.zeros((0, v.shape[1])), np.zeros(0)
        return np.vstack(parts), np.concatenate(limits)

    def cross_check(self, injection_w: np.ndarray, v: np.ndarray) -> float:
        """Largest |V| difference against pandapower.runpp at the given columns' injections."""
        pp = self.pp
        net = copy.deepcopy(self.net)
        mapped = np.flatnonzero(self.node_bus >= 0)
        inv = {
            ppc: b for b, ppc in zip(net.bus.index, net._pd2ppc_lookups["bus"][net.bus.index], strict=True)
        }
        sgens = [
            pp.create_sgen(net, inv[int(self.node_bus[k])], p_mw=0.0, q_mvar=0.0, name=f"gridshare:{k}")
            for k in mapped
        ]
        worst = 0.0
        lookup = net._pd2ppc_lookups["bus"]
        for t in range(injection_w.shape[0]):
            p_mw = injection_w[t, mapped] / 1e6
            net.sgen.loc[sgens, "p_mw"] = p_mw
            net.sgen.loc[sgens, "q_mvar"] = p_mw * self.tan_phi
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pp.runpp(net, numba=False, calculate_voltage_angles=True)
            ours = np.abs(v[lookup[net.bus.index.values], t])
            theirs = net.res_bus["vm_pu"].to_numpy(dtype=float)
            ok = np.isfinite(theirs)
            worst = max(worst, float(np.abs(ours[ok] - theirs[ok]).max(initial=0.0)))
        return worst


def _percent(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 100.0
    return v if math.isfinite(v) and v > 0 else 100.0


def node_injections(grid: StudyGrid, run: YearRun, case: str, rows: np.ndarray) -> np.ndarray:
    """(len(rows), n_nodes) W: the nodes' other customers at profile plus every site at its limit."""
    network = grid.network
    index = {name: i for i, name in enumerate(grid.forecast.ids)}
    node_cols = np.array([index[f"node:{n.name}"] for n in network.nodes], dtype=np.intp)
    out = grid.forecast.generation_w[np.ix_(rows, node_cols)] - grid.forecast.load_w[np.ix_(rows, node_cols)]
    site_node = np.array([network.topology.node_index[n] for n in run.site_nodes], dtype=int)
    limits = run.export_limit_w[rows] if case == "export" else -run.import_limit_w[rows]
    for s, node in enumerate(site_node):
        out[:, node] += limits[:, s]
    return out


def ac_check(
    imported: ImportedNetwork,
    grid: StudyGrid,
    run: YearRun,
    *,
    tolerance: float = 0.01,
    every_s: int = 3600,
    cross_checks: int = 3,
) -> AcCheck:
    """Solve every `every_s` (hourly) interval's envelopes both ways and count violations."""
    t0 = time.perf_counter()
    model = _Model(imported, grid.network)
    rows = np.flatnonzero(grid.epoch_s % every_s == 0)
    records: list[dict[str, Any]] = []
    worst_loading, v_hi, v_lo = 0.0, -np.inf, np.inf
    not_converged = 0
    dv = 0.0
    violating: set[int] = set()
    strict: set[int] = set()
    worst_excess = 0.0
    for case in ("export", "import"):
        inj = node_injections(grid, run, case, rows)
        v, ok = model.solve(inj)
        not_converged += int((~ok).sum())
        load_pct, limit_pct = model.loading(v)
        vm = np.abs(v)
        if load_pct.size:
            worst_loading = max(worst_loading, float(np.nanmax(np.where(ok[None, :], load_pct, np.nan))))
        checked = ~np.isnan(model.v_max)
        if checked.any():
            v_hi = max(v_hi, float(np.nanmax(np.where(ok[None, :], vm[checked], np.nan))))
            v_lo = min(v_lo, float(np.nanmin(np.where(ok[None, :], vm[checked], np.nan))))
        beyond = (load_pct > limit_pct[:, None]).any(axis=0) if load_pct.size else np.zeros(len(rows), bool)
        beyond |= ((vm > model.v_max[:, None]) | (vm < model.v_min[:, None])).any(axis=0)
        strict.update(int(r) for r in rows[beyond & ok])
        with np.errstate(invalid="ignore"):
            excess = [
                np.nanmax(np.where(ok[None, :], load_pct / limit_pct[:, None] - 1, np.nan), initial=0.0)
                if load_pct.size
                else 0.0,
                np.nanmax(np.where(ok[None, :], vm / model.v_max[:, None] - 1, np.nan), initial=0.0),
                np.nanmax(np.where(ok[None, :], 1 - vm / model.v_min[:, None], np.nan), initial=0.0),
            ]
        worst_excess = max(worst_excess, 100 * float(max(excess)))
        over_t = load_pct > (limit_pct * (1 + tolerance))[:, None]
        names = model.element_names + model.reg_names
        for e, t in zip(*np.nonzero(over_t & ok[None, :]), strict=True):
            violating.add(int(rows[t]))
            records.append(_record(grid, rows[t], case, names[e], "loading %", load_pct[e, t], limit_pct[e]))
        high = vm > (model.v_max * (1 + tolerance))[:, None]
        low = vm < (model.v_min * (1 - tolerance))[:, None]
        for kind, mask, bound in (("voltage max", high, model.v_max), ("voltage min", low, model.v_min)):
            for b, t in zip(*np.nonzero(mask & ok[None, :]), strict=True):
                violating.add(int(rows[t]))
                records.append(
                    _record(
                        grid, rows[t], case, model.bus_names.get(int(b), str(b)), kind, vm[b, t], bound[b]
                    )
                )
        if cross_checks and case == "export" and len(rows):
            pick = np.unique(np.r_[np.argmax(inj.sum(axis=1)), np.argmin(inj.sum(axis=1)), len(rows) // 2])[
                :cross_checks
            ]
            dv = max(dv, model.cross_check(inj[pick], v[:, pick]))
    frame = pd.DataFrame(records, columns=["interval_start", "case", "element", "quantity", "value", "limit"])
    return AcCheck(
        hours=len(rows),
        solves=2 * len(rows),
        violations=frame,
        intervals_violating=len(violating),
        intervals_beyond_bound=len(strict),
        worst_excess_pct=worst_excess,
        not_converged=not_converged,
        worst_loading_pct=worst_loading,
        worst_v_max_pu=v_hi if np.isfinite(v_hi) else float("nan"),
        worst_v_min_pu=v_lo if np.isfinite(v_lo) else float("nan"),
        cross_check_max_dv_pu=dv,
        seconds=time.perf_counter() - t0,
        tolerance=tolerance,
    )


def _record(
    grid: StudyGrid, row: int, case: str, element: str, quantity: str, value: float, limit: float
) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "interval_start": datetime.fromtimestamp(int(grid.epoch_s[row]), UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "case": case,
        "element": element,
        "quantity": quantity,
        "value": float(value),
        "limit": float(limit),
    }
