"""Why a site's fallback limit is what it is: the constraint (or agreement) that sets it.

An operator asked "why is this site's default only 2.1 kW?" wants one asset and two numbers: its
rating and what flows through it in the worst case. For each site we name the constraint it loads
that leaves it the least room of its own (slack / sensitivity, in the site's watts); ties go to the
most local asset (fewest sites behind it), which is the one a planner would upgrade first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A site is "at" a bound within this many watts (limits are floored to whole watts).
AT_BOUND_W = 1.0


@dataclass(frozen=True)
class SetBy:
    """What sets one fallback limit.

    kind: "thermal" or "voltage" (a constraint binds), "agreement" (the site's agreed maximum),
    "overloaded" (fixed flows and static floors alone overload a constraint the site loads, so it gets
    at most its floor, and nothing if fixed flows alone overload it),
    "outage" (the site is cut off by an outage), or "unconstrained" (nothing binds; cannot normally
    happen below the cap, kept so an explanation never lies).
    """

    kind: str
    constraint: str
    limit: float | None = None  # rating in W, voltage bound in pu, or the agreed maximum in W
    worst_value: float | None = None  # flow (W) or voltage (pu) in the worst case at the fallback limits
    also: tuple[str, ...] = ()  # further constraints this site loads that bind too
    fixed_only: bool = False  # "overloaded": by fixed flows alone (else by fixed flows and floors)

    def describe(self) -> str:
        if self.kind == "thermal":
            text = f"{self.constraint} (rating {self.limit:.0f} W, worst case {self.worst_value:.0f} W)"
        elif self.kind == "voltage":
            text = f"{self.constraint} (bound {self.limit:.4f} pu, worst case {self.worst_value:.4f} pu)"
        elif self.kind == "agreement":
            text = f"the agreed maximum ({self.limit:.0f} W)"
        elif self.kind == "overloaded":
            what = (
                "fixed flows alone overload" if self.fixed_only else "fixed flows and static floors overload"
            )
            text = f"{self.constraint}, which {what} in the worst case"
        else:
            text = self.constraint
        if self.also:
            text += f"; also binding: {', '.join(self.also)}"
        return text


def setting_constraints(
    *,
    names: tuple[str, ...],
    kinds: tuple[str, ...],
    sensitivity: np.ndarray,
    usable: np.ndarray,
    loading: np.ndarray,
    rating: np.ndarray,
    worst_value: np.ndarray,
    limit_w: np.ndarray,
    cap_w: np.ndarray,
    overloaded: np.ndarray,
    direction: str,
) -> list[SetBy]:
    """One SetBy per site (column of `sensitivity`), for one direction.

    `usable` is the headroom the allocation was given (after the margin), `loading` the allocated
    loading per constraint, `rating`/`worst_value` what an operator reads (W or pu).
    """
    n_sites = sensitivity.shape[1]
    behind = (sensitivity > 0).sum(axis=1)
    out: list[SetBy] = []
    for j in range(n_sites):
        rows = np.flatnonzero(sensitivity[:, j] > 0)
        hit = rows[overloaded[rows]]
        if hit.size:
            c = int(hit[np.argmin(behind[hit])])
            out.append(
                SetBy(
                    "overloaded",
                    names[c],
                    float(rating[c]),
                    float(worst_value[c]),
                    fixed_only=bool(usable[c] < 0),
                )
            )
            continue
        if limit_w[j] >= cap_w[j] - AT_BOUND_W:
            out.append(SetBy("agreement", f"agreement:max_{direction}_kw", float(cap_w[j])))
            continue
        if rows.size == 0:
            out.append(SetBy("unconstrained", "no constraint"))
            continue
        with np.errstate(over="ignore", divide="ignore"):  # a near-zero sensitivity: effectively no limit
            own_slack_w = (usable[rows] - loading[rows]) / sensitivity[rows, j]
        order = np.lexsort((behind[rows], own_slack_w))
        best = rows[order[0]]
        tight = own_slack_w <= max(float(own_slack_w[order[0]]), 0.0) + AT_BOUND_W
        also = tuple(names[int(c)] for c in rows[tight] if c != best)
        out.append(SetBy(kinds[best], names[best], float(rating[best]), float(worst_value[best]), also))
    return out
