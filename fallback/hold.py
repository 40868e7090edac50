"""Sites held at their fallback limits inside a dynamic computation: fixed flows at those limits.

A site whose own data cannot be trusted keeps its fallback limits while the rest of the feeder stays
dynamic; the engine computes everyone else's envelopes around it exporting or importing up to those
limits (which is what it may do). Pure: network model in, network model out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from gridshare.grid.agreements import Limited
from gridshare.grid.netfile import NetworkFile


class HeldAt(Protocol):
    """A held site's fallback limits (W): a store's `SafeDefault`, or the compute task's copy of them."""

    @property
    def export_limit_w(self) -> float: ...

    @property
    def import_limit_w(self) -> float: ...


def hold_at_fallback(nf: NetworkFile, held: Mapping[str, HeldAt]) -> NetworkFile:
    """The network file with the `held` sites turned into fixed flows at their fallback limits.

    The engine then shares the headroom left around those sites exporting or importing up to their
    fallback limits (what they may do), and gives them exactly those limits.
    """
    if not held:
        return nf
    sites = tuple(
        replace(
            s,
            agreement=Limited(export_w=held[s.id].export_limit_w, import_w=held[s.id].import_limit_w),
        )
        if s.id in held
        else s
        for s in nf.sites
    )
    return replace(nf, sites=sites)
