"""Was a run a test of the engine? What the envelope engine did, and whether the run's figures hold.

A run can end with zero violations without ever having tested the envelopes: every recomputation
failed and the fleet ran on fallback-valued envelopes, or this machine could not keep the physics up
with the accelerated clock so devices and server saw a different time from the fleet's. These pure
functions turn the server's recomputation outcomes and the recording into figures and a verdict the
report and the CLI state plainly (docs/simulator.md, "Is the run valid?").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Above this share of the run on fallback-valued envelopes, the run says little about the engine.
FALLBACK_SHARE_LIMIT = 0.5


def engine_periods(
    recomputes: Sequence[dict[str, Any]], start_s: float, end_s: float
) -> list[tuple[float, float]]:
    """Spans in which the fleet's envelopes were not computed ones: from a failed recomputation (whose
    failure policy published fallback-valued envelopes, or let the last ones expire) to the next one
    that published, clipped to the run. Skipped recomputations change nothing."""
    periods: list[tuple[float, float]] = []
    since: float | None = None
    for outcome in sorted(recomputes, key=lambda o: o["at_s"]):
        if outcome["status"] == "failed" and since is None:
            since = float(outcome["at_s"])
        elif outcome["status"] == "published" and since is not None:
            periods.append((since, float(outcome["at_s"])))
            since = None
    if since is not None:
        periods.append((since, float(end_s)))
    clipped = [(max(a, start_s), min(b, end_s)) for a, b in periods]
    return [(a, b) for a, b in clipped if b > a]


def in_periods(times_s: np.ndarray, periods: Sequence[tuple[float, float]]) -> np.ndarray:
    """For each time, whether it falls in one of the [from, until) periods."""
    mask = np.zeros(len(times_s), dtype=bool)
    for a, b in periods:
        mask |= (times_s >= a) & (times_s < b)
    return mask


def engine_figures(
    recomputes: Sequence[dict[str, Any]], start_s: float, end_s: float, observed: bool = True
) -> dict[str, Any]:
    """How many recomputations published, failed and were skipped, and how long the fleet ran on
    fallback-valued envelopes. `observed` is False in connect mode (the server is not ours to watch)."""
    if not observed:
        return {"observed": False}
    statuses = [o["status"] for o in recomputes]
    periods = engine_periods(recomputes, start_s, end_s)
    on_fallback_s = sum(b - a for a, b in periods)
    failures = [o for o in recomputes if o["status"] == "failed"]
    return {
        "observed": True,
        "recomputations": len(recomputes),
        "published": statuses.count("published"),
        "failed": len(failures),
        "skipped": statuses.count("skipped"),
        "on_fallback_s": int(on_fallback_s),
        "on_fallback_share": round(on_fallback_s / (end_s - start_s), 4) if end_s > start_s else 0.0,
        "fallback_periods": [[int(a), int(b)] for a, b in periods],
        "first_failure": failures[0]["detail"] if failures else None,
    }


def lag_limit_s(envelope_interval_s: int) -> float:
    """How far the physics may run behind the simulated clock: half an envelope interval. Later than
    that, a step can apply the limit of an interval other than the one the server has in force, and
    telemetry reaches the server that much older than the fleet believes."""
    return envelope_interval_s / 2


def verdict(
    max_lag_s: float,
    lag_limit: float,
    factor: float,
    engine: dict[str, Any],
    healthy_in_fallback: Sequence[str],
) -> dict[str, Any]:
    """`valid` False with the reasons when the run's figures do not describe the engine's envelopes;
    `warnings` for what a reader should know but does not void the run."""
    problems: list[str] = []
    warnings: list[str] = []
    if max_lag_s > lag_limit:
        problems.append(
            f"the physics ran up to {max_lag_s:,.0f} s behind the simulated clock (more than "
            f"{lag_limit:g} s, half an envelope interval): this machine could not keep up at x{factor:g}; "
            "rerun with a lower --factor or on a quieter machine"
        )
    if healthy_in_fallback:
        problems.append(
            f"{len(healthy_in_fallback)} site(s) with no simulated outage fell back to their default control "
            f"({', '.join(list(healthy_in_fallback)[:5])}{', ...' if len(healthy_in_fallback) > 5 else ''}): "
            "the server or this machine did not keep up"
        )
    if engine.get("observed"):
        share = engine["on_fallback_share"]
        if engine["failed"]:
            text = (
                f"{engine['failed']} of {engine['recomputations']} recomputations failed "
                f"(first: {engine['first_failure'] or 'no reason given'}); the fleet ran on fallback-valued "
                f"envelopes for {engine['on_fallback_s'] / 3600:.2f} h ({100 * share:.0f} % of the run)"
            )
            if share > FALLBACK_SHARE_LIMIT:
                problems.append(text + ": the run did not test the engine's envelopes")
            else:
                warnings.append(text)
    return {"valid": not problems, "problems": problems, "warnings": warnings}
