"""How finely a site's envelope is rounded before publication: fewer controls for large sites."""

from __future__ import annotations

from collections.abc import Sequence

from gridshare.grid.network import Site


def resolutions_w(sites: Sequence[Site], resolution_w: float, resolution_pct: float) -> dict[str, float]:
    """Rounding step per site: `resolution_w`, or `resolution_pct` of the site's size if that is larger.

    A 2.7 MW solar farm whose limit moves by a few hundred watts each interval would otherwise get a
    new control every five minutes; 1 % of its size keeps the list short and the limit conservative.
    """
    return {
        s.id: max(resolution_w, resolution_pct / 100 * max(s.max_export_w, s.max_import_w)) for s in sites
    }
