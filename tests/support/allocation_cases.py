"""Hypothesis strategies for radial and meshed allocation problems, shared by the allocation suites."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gridshare.allocation import AllocationProblem

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def radial(draw: st.DrawFn, *, ramp: bool = False, max_intervals: int = 3) -> AllocationProblem:
    """A random tree of constraints (row 0 is the root), sites hung off random nodes (or none).

    Values sit on a 100 W grid so that ties, exact fits and zero headroom all turn up.
    """
    n_rows = draw(st.integers(1, 7))
    parent = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n_rows)]
    n_sites = draw(st.integers(1, 9))
    node = [draw(st.integers(-1, n_rows - 1)) for _ in range(n_sites)]  # -1: loads no row
    n_intervals = draw(st.integers(1, max_intervals))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    sensitivity = np.zeros((n_rows, n_sites))
    scale = rng.choice([1.0, 1.0, 1.0, 0.5, 2.0], size=n_rows)  # e.g. a row in kW-equivalents
    for j, start in enumerate(node):
        row = start
        while row >= 0:
            sensitivity[row, j] = scale[row]
            row = parent[row]
    cap_w = rng.integers(0, 40, size=(n_intervals, n_sites)) * 100.0
    floor_w = np.where(
        rng.random((n_intervals, n_sites)) < 0.4,
        np.minimum(cap_w, rng.integers(0, 10, cap_w.shape) * 100.0),
        0.0,
    )
    if ramp:  # constant floors and caps, so only the ramp decides the steps
        cap_w, floor_w = np.tile(cap_w[0], (n_intervals, 1)), np.tile(floor_w[0], (n_intervals, 1))
    reach = cap_w @ sensitivity.T
    fraction = np.where(rng.random(reach.shape) < 0.1, -0.1, rng.uniform(0.0, 1.1, size=reach.shape))
    headroom = np.round(reach * fraction, -2)  # now and then already overloaded
    weight = rng.integers(1, 40, size=n_sites) * 100.0
    tranche = np.round((sensitivity > 0) @ weight * rng.uniform(0.0, 1.2, size=n_rows), -2)
    return AllocationProblem(
        site_ids=tuple(f"s{j}" for j in range(n_sites)),
        constraint_names=tuple(f"c{i}" for i in range(n_rows)),
        sensitivity=sensitivity,
        headroom=headroom,
        floor_w=floor_w,
        cap_w=cap_w,
        weight=weight,
        queue_position=rng.permutation(n_sites),
        tranche_size_w=tranche if draw(st.booleans()) else None,
        max_step_w=rng.integers(0, 15, size=n_sites) * 100.0 if ramp else None,
        initial_w=floor_w[0] + rng.random(n_sites) * (cap_w[0] - floor_w[0]) if ramp else None,
    )


@st.composite
def meshed(draw: st.DrawFn) -> AllocationProblem:
    """Arbitrary non-negative sensitivities: thermal rows plus voltage-like rows (dV/dP)."""
    base = draw(radial())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_extra = draw(st.integers(1, 3))
    dv = rng.uniform(0.2, 2.0, size=(n_extra, base.n_sites)) * (rng.random((n_extra, base.n_sites)) < 0.7)
    reach = base.cap_w @ dv.T
    sensitivity = np.vstack([base.sensitivity, dv])
    headroom = np.hstack([base.headroom, reach * rng.uniform(-0.05, 1.1, size=reach.shape)])
    tranche = None
    if base.tranche_size_w is not None:
        tranche = np.r_[base.tranche_size_w, rng.uniform(0, 1.2, n_extra) * ((dv > 0) @ base.weight)]
    return replace(
        base,
        constraint_names=base.constraint_names + tuple(f"v{i}" for i in range(n_extra)),
        sensitivity=sensitivity,
        headroom=headroom,
        tranche_size_w=tranche,
    )
