"""Capacity allocation: share a feeder's headroom among flexible sites (pure numpy, no I/O).

Rules (see the Ameren report's "Dynamic Flexible Connection Capacity Allocation Strategies"):
pro-rata, pro-rata tranches, LIFO, and max-total as the efficiency yardstick.
"""

from gridshare.allocation.lifo import allocate_lifo
from gridshare.allocation.maxtotal import allocate_max_total
from gridshare.allocation.problem import AllocationProblem, AllocationResult, Infeasibility
from gridshare.allocation.prorata import allocate_prorata
from gridshare.allocation.rules import POLICIES, Policy, allocate
from gridshare.allocation.tranche import allocate_tranche

__all__ = [
    "POLICIES",
    "AllocationProblem",
    "AllocationResult",
    "Infeasibility",
    "Policy",
    "allocate",
    "allocate_lifo",
    "allocate_max_total",
    "allocate_prorata",
    "allocate_tranche",
]
