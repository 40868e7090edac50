"""Ramp limits turned into per-interval bounds.

A limit may move at most max_step_w from one interval to the next (the Dominion document's
rapid-voltage-change limits of 3 % MV / 5 % LV are one reason to smooth envelope steps). The
step bound is applied as a tightened floor and cap for interval t from the limit chosen at
t-1, which makes intervals sequential. Contractual floors and caps win over the ramp: a cap
that drops (or a floor that rises) by more than one step is honoured at once.
"""

from __future__ import annotations

import numpy as np


def ramp_bounds(
    floor_w: np.ndarray,
    cap_w: np.ndarray,
    previous_w: np.ndarray | None,
    max_step_w: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest limit allowed this interval given the previous interval's limit.

    The lower bound acts like a floor: if it overloads a constraint, that is reported as an
    infeasibility rather than broken by a sudden drop.
    """
    if previous_w is None or max_step_w is None:
        return floor_w, cap_w
    lo = np.maximum(floor_w, np.minimum(previous_w - max_step_w, cap_w))
    hi = np.minimum(cap_w, np.maximum(previous_w + max_step_w, floor_w))
    return lo, hi
