"""Max-total: the most DER the network can take in each interval, as a linear programme.

    maximise sum(limit)  subject to  sensitivity @ limit <= headroom,  lo <= limit <= hi

It ignores fairness entirely, which makes it the yardstick for the other rules: no rule can
connect more in an interval. The LP is built once with cvxpy parameters and re-solved per
interval. Rows are scaled to a largest coefficient of 1 so that watt rows and per-unit
voltage rows (dV/dP ~ 1e-8) look alike to the solver.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any

import numpy as np
import scipy.sparse as sparse

from gridshare.allocation.driver import Core, solve
from gridshare.allocation.network import RTOL, Network
from gridshare.allocation.problem import AllocationProblem, AllocationResult

_PREFERRED_SOLVERS = ("HIGHS", "CLARABEL", "ECOS", "SCIPY")
# HiGHS's presolve spends ~1 s on feeders where many sites have identical columns (the same
# transformer, feeder and zone); its dual simplex without presolve takes ~0.1 s on 10^4 sites.
_SOLVER_OPTIONS: dict[str, dict[str, object]] = {"HIGHS": {"highs_options": {"presolve": "off"}}}


def _cvxpy() -> Any:
    """cvxpy, imported on first use: it takes seconds to import, and a restarted server that only
    needs it for the max-total rule must not wait for it before it can publish (issue 11)."""
    return importlib.import_module("cvxpy")


def _solvers() -> list[str]:
    """Solvers that ship with cvxpy here, best for LPs first."""
    installed = set(_cvxpy().installed_solvers())
    if "HIGHS" in installed:
        _silence_highs_banner()
    return [name for name in _PREFERRED_SOLVERS if name in installed]


_banner_lock = threading.Lock()
_banner_done = False


def _silence_highs_banner() -> None:
    """HiGHS writes a copyright banner to the process's stdout the first time one solver is made.

    cvxpy's `verbose=False` cannot stop it (it is printed before options are set), and it lands in
    the middle of a CLI's output. Making that first instance here with stdout pointed at /dev/null
    uses the banner up; later instances print nothing.
    """
    global _banner_done
    with _banner_lock:
        if _banner_done:
            return
        _banner_done = True
        try:
            import highspy
        except ImportError:
            return
        sys.stdout.flush()
        try:
            saved = os.dup(1)
        except OSError:  # no stdout at all: nothing to protect
            highspy.Highs()
            return
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 1)
                highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)


class MaxTotal:
    """A compiled LP for one network, re-solved for each interval's bounds and headroom."""

    def __init__(self, net: Network) -> None:
        cp = self._cp = _cvxpy()
        n_sites = net.sensitivity.shape[1]
        row_max = net.sensitivity.max(axis=1, initial=0.0)
        self._used_rows = np.flatnonzero(row_max > 0)
        self._scale = 1.0 / row_max[self._used_rows]
        scaled = net.sensitivity[self._used_rows] * self._scale[:, None]
        self._sensitivity = net.sensitivity
        self._matrix = net.matrix
        self._lo = cp.Parameter(n_sites)
        self._hi = cp.Parameter(n_sites)
        # Floors and caps as column bounds, not rows: HiGHS's simplex handles boxes natively.
        self._limit = cp.Variable(n_sites, bounds=[self._lo, self._hi])
        self._headroom = cp.Parameter(self._used_rows.shape[0])
        constraints = []
        if self._used_rows.size:
            constraints.append(sparse.csr_matrix(scaled) @ self._limit <= self._headroom)
        self._problem = cp.Problem(cp.Maximize(cp.sum(self._limit)), constraints)
        self._solvers = _solvers()
        if not self._solvers:
            raise RuntimeError("no LP solver available to cvxpy")

    def interval(self, headroom: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Solve one interval; a row that `lo` already overloads keeps all its sites at `lo`."""
        floor_load = self._matrix @ lo
        overloaded = floor_load > headroom + RTOL * np.abs(headroom)
        pinned = (self._sensitivity[overloaded] > 0).any(axis=0)
        hi = np.where(pinned, lo, hi)
        if self._used_rows.size == 0:
            return hi.copy()
        reach = self._matrix @ hi
        # Relax rows to at least their floor loading so the LP is always feasible, and stand
        # an unbounded (+inf) headroom in by something the row can never reach.
        rhs = np.maximum(headroom, floor_load)
        rhs = np.where(np.isfinite(rhs), rhs, reach + 1.0)
        self._lo.value = lo
        self._hi.value = hi
        self._headroom.value = rhs[self._used_rows] * self._scale
        cp = self._cp
        for solver in self._solvers:
            try:
                # warm starts from another interval's basis made HiGHS ~20x slower here
                options = _SOLVER_OPTIONS.get(solver, {})
                self._problem.solve(solver=solver, warm_start=False, **options)
            except cp.error.SolverError:
                continue
            if self._problem.status == cp.OPTIMAL and self._limit.value is not None:
                return np.clip(self._limit.value, lo, hi)
        raise RuntimeError(f"max-total LP failed ({self._problem.status}) with {self._solvers}")

    def __call__(self, headroom: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return np.stack([self.interval(headroom[t], lo[t], hi[t]) for t in range(headroom.shape[0])])


def max_total_core(net: Network) -> Core:
    """Compile the LP once per problem; the driver calls it per interval (or per horizon)."""
    return MaxTotal(net)


def allocate_max_total(problem: AllocationProblem, *, use_tree: bool = True) -> AllocationResult:
    """Maximise the total limit per interval (floors, caps, ramp and constraints honoured).

    Any maximiser may come back when several exist; `use_tree` is accepted for a uniform
    signature and changes nothing.
    """
    return solve(problem, max_total_core, use_tree=use_tree)
