"""Forecast-aware envelopes: a flexible site's share is capped at its forecast flow plus a margin.

"As issued", each flexible site's cap is its agreed capacity, so a rule that serves sites in order
(LIFO, tranches) reserves for an earlier site capacity it will not use: at 13:00 on a June day a
1,500 kW warehouse PV forecast at 1,000 kW keeps 1,500 kW while a later solar farm is curtailed.
Capping each site at forecast + margin (never below its floor, never above its agreement) passes
that capacity to later sites. The allocation still respects every constraint, so the network is
exactly as safe; what a site risks is its own output above forecast + margin when the forecast is
low. The margin is a share of the site's agreed capacity, so it is a fixed cushion in kW.
"""

from __future__ import annotations

import numpy as np


def forecast_capped(
    floor_w: np.ndarray,
    cap_w: np.ndarray,
    forecast_w: np.ndarray,
    margin_fraction: float,
    known: np.ndarray,
) -> np.ndarray:
    """Caps (n_intervals, n_sites) lowered to forecast + margin for sites with a forecast (`known`).

    `forecast_w` is the flow the site is expected to want in this direction (export: generation minus
    load; import: load minus generation); negative means none. The margin is `margin_fraction` of the
    site's largest agreed cap over the horizon. Sites without a forecast keep their agreed cap.
    """
    if margin_fraction < 0 or not np.isfinite(margin_fraction):
        raise ValueError(f"forecast margin must be a finite share >= 0, got {margin_fraction}")
    cap_w = np.asarray(cap_w, dtype=float)
    if cap_w.size == 0:
        return cap_w.copy()
    margin_w = margin_fraction * cap_w.max(axis=0)
    capped = np.minimum(cap_w, np.clip(forecast_w, 0.0, None) + margin_w)
    capped = np.maximum(capped, floor_w)
    return np.where(np.asarray(known, dtype=bool)[None, :], capped, cap_w)
