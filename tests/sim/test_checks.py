"""Whether a run tested the engine: recomputation figures, fallback-envelope time and the verdict."""

from __future__ import annotations

import numpy as np

from gridshare.sim.checks import engine_figures, engine_periods, in_periods, lag_limit_s, verdict
from gridshare.sim.report import to_markdown, validity_blocks

T0 = 1_800_000_000
HOUR = 3600


def _outcome(at_h: float, status: str, detail: str = "") -> dict[str, object]:
    return {"at_s": T0 + int(at_h * HOUR), "status": status, "detail": detail, "action": ""}


def test_fallback_envelopes_run_from_a_failure_to_the_next_publication() -> None:
    outcomes = [
        _outcome(0, "published"),
        _outcome(1, "failed", "telemetry is stale"),
        _outcome(2, "failed", "telemetry is stale"),
        _outcome(2.5, "skipped"),
        _outcome(3, "published"),
        _outcome(5, "failed", "recompute budget exceeded"),
    ]
    periods = engine_periods(outcomes, T0, T0 + 6 * HOUR)
    assert periods == [(T0 + 1 * HOUR, T0 + 3 * HOUR), (T0 + 5 * HOUR, T0 + 6 * HOUR)]
    figs = engine_figures(outcomes, T0, T0 + 6 * HOUR)
    assert (figs["recomputations"], figs["published"], figs["failed"], figs["skipped"]) == (6, 2, 3, 1)
    assert figs["on_fallback_s"] == 3 * HOUR and figs["on_fallback_share"] == 0.5
    assert figs["first_failure"] == "telemetry is stale"
    times = np.array([T0 + h * HOUR for h in (0.5, 1, 2.9, 3, 5.5)], dtype=float)
    assert in_periods(times, periods).tolist() == [False, True, True, False, True]


def test_a_run_on_fallback_envelopes_most_of_the_time_is_not_valid() -> None:
    """The run that reported 0 violations while every recomputation failed must say so."""
    outcomes = [
        _outcome(0, "published"),
        *(_outcome(h, "failed", "telemetry is stale") for h in range(1, 24)),
    ]
    engine = engine_figures(outcomes, T0, T0 + 24 * HOUR)
    result = verdict(10.0, lag_limit_s(300), 360, engine, [])
    assert not result["valid"]
    assert "23 of 24 recomputations failed (first: telemetry is stale)" in result["problems"][0]
    assert "did not test the engine's envelopes" in result["problems"][0]
    # a short failure is worth a warning, not a verdict
    brief = engine_figures(
        [_outcome(0, "published"), _outcome(1, "failed"), _outcome(2, "published")], T0, T0 + 24 * HOUR
    )
    result = verdict(10.0, lag_limit_s(300), 360, brief, [])
    assert result["valid"] and "1 of 3 recomputations failed" in result["warnings"][0]


def test_a_lagging_clock_or_healthy_sites_in_fallback_void_the_run() -> None:
    engine = engine_figures([_outcome(0, "published")], T0, T0 + HOUR)
    assert lag_limit_s(300) == 150
    assert verdict(149.0, 150, 360, engine, [])["valid"]
    lagged = verdict(1900.0, 150, 360, engine, ["house-3"])
    assert not lagged["valid"] and len(lagged["problems"]) == 2
    assert "1,900 s behind the simulated clock" in lagged["problems"][0] and "x360" in lagged["problems"][0]
    assert "house-3" in lagged["problems"][1]
    # connect mode: the server's recomputations are not observed, and nothing is claimed about them
    assert verdict(0.0, 150, 1, engine_figures([], T0, T0 + HOUR, observed=False), [])["valid"]


def test_the_report_opens_with_the_verdict() -> None:
    engine = engine_figures([_outcome(0, "published")], T0, T0 + HOUR)
    text = to_markdown(validity_blocks({"validity": verdict(1900.0, 150, 360, engine, [])}))
    assert text.startswith(
        "**NOT VALID: these figures do not describe the engine's envelopes.** The physics ran"
    )
    assert to_markdown(validity_blocks({"validity": verdict(1.0, 150, 360, engine, [])})) == ""
