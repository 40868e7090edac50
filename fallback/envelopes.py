"""Fallback-valued envelopes: the same horizon and blocks as dynamic ones, without any forecast.

Dynamic sites get their fallback limits for every interval; every other site its agreed limit for
the interval (no forecast needed for that either). Published through the ordinary publisher, so a
fallback set is atomic, ends like any other, and a device cannot tell it from a dynamic one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from gridshare.envelopes.compute import EnvelopeSet
from gridshare.fallback.safe_default import SafeDefault
from gridshare.grid.agreements import IntervalTimes, agreement_bounds
from gridshare.grid.network import Site

POLICY = "fallback"


def fallback_envelope_set(
    sites: Sequence[Site],
    safe: dict[str, SafeDefault],
    start_s: int,
    horizon_s: int,
    interval_s: int,
    tz: str,
) -> EnvelopeSet:
    """Per-interval limits for `sites`: safe values for dynamic ones, agreed limits for the rest."""
    epochs = start_s + interval_s * np.arange(horizon_s // interval_s, dtype=np.int64)
    times = IntervalTimes.build(epochs, tz)
    n = len(epochs)
    export = np.zeros((n, len(sites)))
    imp = np.zeros((n, len(sites)))
    for j, site in enumerate(sites):
        if site.id in safe:
            export[:, j] = safe[site.id].export_limit_w
            imp[:, j] = safe[site.id].import_limit_w
        else:
            bounds = agreement_bounds(site.agreement, times, site.max_export_w, site.max_import_w)
            export[:, j], imp[:, j] = bounds.export_cap_w, bounds.import_cap_w
    return EnvelopeSet(
        site_ids=tuple(s.id for s in sites),
        flexible=np.array([s.agreement.flexible for s in sites], dtype=bool),
        interval_starts=tuple(datetime.fromtimestamp(int(e), tz=UTC) for e in epochs),
        interval_s=interval_s,
        policy=POLICY,
        export_limit_w=export,
        import_limit_w=imp,
        forecast_export_w=np.zeros((n, len(sites))),
        constraints={},
        infeasibilities=(),
        forecast_issued_at=datetime.fromtimestamp(start_s, tz=UTC),
    )
