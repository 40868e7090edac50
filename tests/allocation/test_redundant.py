"""Rows another row covers all horizon long change nothing: pruning them gives the same limits.

The driver drops covered rows before pro-rata and LIFO run (allocation/redundant.py) and skips
intervals with nothing to share. Checked here against the same rules run without either, on the
property suites' random radial and meshed problems, with covered rows added on purpose (a voltage
bound nearer the source, a copy of a rating with more headroom) so that there is always something
to drop.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gridshare.allocation import AllocationProblem
from gridshare.allocation.driver import solve
from gridshare.allocation.lifo import lifo_limits
from gridshare.allocation.prorata import prorata_limits
from gridshare.allocation.redundant import redundant_rows
from tests.support.allocation_cases import FAST, meshed, radial


def with_covered_rows(p: AllocationProblem, scale: float, slack: float) -> AllocationProblem:
    """Every row again, scaled down by `scale` <= 1 with at least as much headroom: each is covered."""
    extra_headroom = np.where(np.isfinite(p.headroom), p.headroom * scale + slack, np.inf)
    return replace(
        p,
        constraint_names=(*p.constraint_names, *(f"{n}:covered" for n in p.constraint_names)),
        sensitivity=np.vstack([p.sensitivity, p.sensitivity * scale]),
        headroom=np.hstack([p.headroom, extra_headroom]),
        tranche_size_w=None,
    )


@FAST
@given(
    p=st.one_of(radial(), meshed()),
    scale=st.floats(0.1, 1.0),
    slack=st.one_of(st.just(0.0), st.floats(10.0, 1e5)),
    rule=st.sampled_from(("pro-rata", "lifo")),
)
def test_pruned_rules_give_the_same_limits(
    p: AllocationProblem, scale: float, slack: float, rule: str
) -> None:
    q = with_covered_rows(replace(p, max_step_w=None, initial_w=None), scale, slack)
    drop = redundant_rows(q.sensitivity, q.headroom)
    original = len(p.constraint_names)
    loaded = q.sensitivity[original:].any(axis=1)
    if slack >= 10 and loaded.any():  # exact copies may stay (ratios are rounded up); these are covered
        assert drop[original:][loaded].all()
    core = prorata_limits if rule == "pro-rata" else lifo_limits
    pruned = solve(q, lambda net: lambda h, lo, hi: core(net, h, lo, hi), prune=True)
    full = solve(q, lambda net: lambda h, lo, hi: core(net, h, lo, hi), prune=False)
    scale_w = max(1.0, float(np.abs(full.limit_w).max(initial=0.0)))
    np.testing.assert_allclose(pruned.limit_w, full.limit_w, rtol=1e-9, atol=1e-7 * scale_w)
    np.testing.assert_array_equal(pruned.binding, full.binding)
    assert pruned.binding.shape == (q.n_intervals, len(q.constraint_names))  # reported over every row
