"""One entry point for every allocation rule, chosen by name (e.g. from a site agreement)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from gridshare.allocation.lifo import allocate_lifo
from gridshare.allocation.maxtotal import allocate_max_total
from gridshare.allocation.problem import AllocationProblem, AllocationResult
from gridshare.allocation.prorata import allocate_prorata
from gridshare.allocation.tranche import allocate_tranche

Policy = Literal["pro-rata", "tranche", "lifo", "max-total"]
POLICIES: tuple[Policy, ...] = get_args(Policy)

_RULES: dict[str, Callable[[AllocationProblem], AllocationResult]] = {
    "pro-rata": allocate_prorata,
    "tranche": allocate_tranche,
    "lifo": allocate_lifo,
    "max-total": allocate_max_total,
}


def allocate(problem: AllocationProblem, policy: Policy) -> AllocationResult:
    """Share the problem's headroom by the named rule; unknown names are a programming error."""
    try:
        rule = _RULES[policy]
    except KeyError:
        raise ValueError(f"unknown allocation policy {policy!r}; expected one of {POLICIES}") from None
    return rule(problem)
