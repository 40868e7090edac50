"""The figures of a run: energy and curtailment per site, violations, compliance, fallback, the server.

Pure arithmetic over the recording, returned as plain JSON-ready dicts so the report, the comparison
and the tests read the same numbers.

Curtailment is PV held back by a limit, split by which limit: the engine's computed envelopes, or a
fallback (fallback-valued envelopes the server published when a recomputation failed, or the
DefaultDERControl a device applies after losing contact). PV held back by the inverter's soft
ramp-up (after a start, a disconnect or a limit rising) is not curtailment and is counted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gridshare.grid.agreements import Dynamic
from gridshare.sim.checks import engine_figures, engine_periods, in_periods, lag_limit_s, verdict
from gridshare.sim.powerflow import Constraint
from gridshare.sim.record import Recording
from gridshare.sim.runner import RunOutput

#: A site within its limit to this many watts counts as compliant (meters and rounding are not exact).
COMPLIANCE_TOLERANCE_W = 10.0


def _kwh(power_w: np.ndarray, step_s: int) -> np.ndarray:
    return power_w.astype(np.float64).sum(axis=0) * step_s / 3.6e6


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def gini(values: np.ndarray) -> float:
    """0 when every site loses the same share, towards 1 when a few lose everything."""
    v = np.sort(np.asarray(values, dtype=float))
    if len(v) == 0 or v.sum() <= 0:
        return 0.0
    n = len(v)
    return float((2 * np.arange(1, n + 1) - n - 1) @ v / (n * v.sum()))


def violation_events(
    rec: Recording, excess: np.ndarray, constraints: Sequence[Constraint] | None = None
) -> list[dict[str, Any]]:
    """Contiguous runs of steps in which one constraint was over its limit.

    `constraints` are excess's columns when they are not the recording's (the engine's list beside a
    given pandapower network's); a step that was not solved (NaN) counts as no violation.
    """
    events = []
    for c, constraint in enumerate(rec.constraints if constraints is None else constraints):
        over = excess[:, c] > 0
        if not over.any():
            continue
        edges = np.diff(np.concatenate(([0], over.astype(np.int8), [0])))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            worst = float(excess[a:b, c].max())
            events.append(
                {
                    "constraint": constraint.name,
                    "kind": constraint.kind,
                    "from_s": int(rec.times_s[a]),
                    "duration_s": int((b - a) * rec.step_s),
                    "worst": round(worst / 1000.0, 3) if constraint.kind == "thermal" else round(worst, 5),
                    "unit": "kW" if constraint.kind == "thermal" else "pu",
                }
            )
    return events


def violation_summary(
    rec: Recording, excess: np.ndarray, constraints: Sequence[Constraint] | None = None
) -> dict[str, Any]:
    events = violation_events(rec, excess, constraints)
    thermal = [e["worst"] for e in events if e["kind"] == "thermal"]
    voltage = [e["worst"] for e in events if e["kind"] == "voltage"]
    return {
        "count": len(events),
        "constraint_steps": int((excess > 0).sum()),
        "worst_kw": max(thermal, default=0.0),
        "worst_pu": max(voltage, default=0.0),
        "duration_s": int((excess > 0).any(axis=1).sum() * rec.step_s),
        "longest_s": max((e["duration_s"] for e in events), default=0),
        "events": events[:200],
    }


def site_figures(out: RunOutput, engine_fallback: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Per site; `engine_fallback` marks the steps the server had fallback-valued envelopes out."""
    rec = out.recording
    step_s = rec.step_s
    exported = _kwh(np.clip(rec.net_export_w, 0, None), step_s)
    imported = _kwh(np.clip(-rec.net_export_w, 0, None), step_s)
    available = _kwh(rec.pv_available_w, step_s)
    held_w = np.clip(rec.pv_available_w - rec.pv_w, 0, None)  # everything PV did not make
    ramp_w = np.minimum(np.clip(rec.pv_allowed_w - rec.pv_w, 0, None), held_w)  # the ramp's share
    limited_w = held_w - ramp_w  # the limits' share: curtailment
    on_fallback = rec.fallback.copy()
    if engine_fallback is not None:
        on_fallback |= engine_fallback[:, None]
    curtailed_all = _kwh(limited_w, step_s)
    curtailed_fallback = _kwh(np.where(on_fallback, limited_w, 0.0), step_s)
    ramp = _kwh(ramp_w, step_s)
    ev_deferred = _kwh(np.clip(rec.ev_wanted_w - rec.ev_w, 0, None), step_s)
    within = (rec.net_export_w <= rec.export_limit_w + COMPLIANCE_TOLERANCE_W) & (
        -rec.net_export_w <= rec.import_limit_w + COMPLIANCE_TOLERANCE_W
    )
    compliance = within.mean(axis=0) if len(rec.times_s) else np.ones(len(rec.site_ids))
    fallback_s = rec.fallback.sum(axis=0) * step_s
    rows = []
    for i, s in enumerate(out.sites):
        agent = out.agents[s.id]
        curtailed = float(curtailed_all[i])
        rows.append(
            {
                "site": s.id,
                "nmi": s.spec.nmi,
                "node": s.spec.node,
                "agreement": s.spec.agreement.kind,
                "queue_position": s.spec.queue_position,
                "dynamic": isinstance(s.spec.agreement, Dynamic),
                "devices": s.kinds(),
                "group": s.group,
                "non_compliant": s.non_compliant,
                "exported_kwh": round(float(exported[i]), 3),
                "imported_kwh": round(float(imported[i]), 3),
                "pv_available_kwh": round(float(available[i]), 3),
                "curtailed_kwh": round(curtailed, 3),
                "curtailed_share": round(curtailed / float(available[i]), 4) if available[i] > 0 else 0.0,
                "curtailed_envelopes_kwh": round(curtailed - float(curtailed_fallback[i]), 3),
                "curtailed_fallback_kwh": round(float(curtailed_fallback[i]), 3),
                "ramp_kwh": round(float(ramp[i]), 3),
                "ev_deferred_kwh": round(float(ev_deferred[i]), 3),
                "compliance": round(float(compliance[i]), 4),
                "fallback_s": int(fallback_s[i]),
                "fallback_periods": [
                    [int(a), None if b is None else int(b)] for a, b in agent.fallback_periods
                ],
                "outages": [[int(a), int(b)] for a, b in out.outages.get(s.id, [])],
                "responses_posted": agent.responses_posted,
                "nmi_refused": agent.nmi_refused,
                "problems": agent.problems[:5],
            }
        )
    return rows


def fault_figures(out: RunOutput) -> list[dict[str, Any]]:
    """Per outage: when the device fell back (seconds after the outage began) and when it resumed."""
    timeout = out.scenario.fleet.fallback_timeout_s
    rows = []
    for site_id, windows in out.outages.items():
        periods = out.agents[site_id].fallback_periods
        for a, b in windows:
            if b <= out.start_s or a >= out.end_s:
                continue
            during = [p for p in periods if a <= p[0] <= b + timeout]
            entered = during[0][0] if during else None
            resumed = during[0][1] if during else None
            rows.append(
                {
                    "site": site_id,
                    "outage_from_s": int(a),
                    "outage_until_s": int(b),
                    "fallback_after_s": None if entered is None else round(entered - a, 1),
                    "resumed_after_end_s": None if resumed is None else round(resumed - b, 1),
                    "within_timeout": entered is not None and entered - a <= timeout + 1e-6,
                    "expected_fallback": b - a > timeout,
                }
            )
    return rows


def _latency(stats_ms: list[float]) -> dict[str, float]:
    if not stats_ms:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    arr = np.asarray(stats_ms)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
    }


def figures(out: RunOutput) -> dict[str, Any]:
    rec = out.recording
    spawned = out.scenario.server.mode == "spawn"
    engine = engine_figures(out.recomputes, out.start_s, out.end_s, observed=spawned)
    engine_fallback = in_periods(rec.times_s, engine_periods(out.recomputes, out.start_s, out.end_s))
    sites = site_figures(out, engine_fallback)
    pv_sites = np.array([r["curtailed_share"] for r in sites if r["pv_available_kwh"] > 0])
    total_available = sum(r["pv_available_kwh"] for r in sites)
    total_curtailed = sum(r["curtailed_kwh"] for r in sites)
    faults = fault_figures(out)
    healthy = [r for r in sites if not r["outages"]]
    max_lag_s = round(float(rec.lag_s.max()) if len(rec.lag_s) else 0.0, 1)
    lag_limit = lag_limit_s(out.scenario.server.envelope_interval_s)
    healthy_in_fallback = [r["site"] for r in healthy if r["fallback_s"] > 0]
    return {
        # first, so no reader of figures.json misses it: whether these figures describe the engine
        "validity": verdict(max_lag_s, lag_limit, out.scenario.clock.factor, engine, healthy_in_fallback),
        "scenario": out.scenario.name,
        "policy": out.scenario.policy,
        "powerflow": out.scenario.powerflow,
        "network": out.network.network.name,
        # where violations were counted: the engine's network, or a given pandapower net (file, counts)
        "powerflow_network": {**out.powerflow_network, "constraints": len(rec.constraints)},
        "steps_not_solved": int(np.isnan(rec.value[: rec.steps_done]).any(axis=1).sum()),
        "sites": len(sites),
        "start_s": out.start_s,
        "end_s": out.end_s,
        "step_s": rec.step_s,
        "steps": len(rec.times_s),
        "totals": {
            "exported_kwh": round(sum(r["exported_kwh"] for r in sites), 2),
            "imported_kwh": round(sum(r["imported_kwh"] for r in sites), 2),
            "pv_available_kwh": round(total_available, 2),
            "curtailed_kwh": round(total_curtailed, 2),
            "curtailed_share": round(total_curtailed / total_available, 4) if total_available else 0.0,
            "curtailed_envelopes_kwh": round(sum(r["curtailed_envelopes_kwh"] for r in sites), 2),
            "curtailed_fallback_kwh": round(sum(r["curtailed_fallback_kwh"] for r in sites), 2),
            "ramp_kwh": round(sum(r["ramp_kwh"] for r in sites), 2),
            "ev_deferred_kwh": round(sum(r["ev_deferred_kwh"] for r in sites), 2),
        },
        "curtailment_distribution": {
            "min": round(_pct(pv_sites, 0), 4),
            "p10": round(_pct(pv_sites, 10), 4),
            "median": round(_pct(pv_sites, 50), 4),
            "p90": round(_pct(pv_sites, 90), 4),
            "max": round(_pct(pv_sites, 100), 4),
            "gini": round(gini(pv_sites), 4),
        },
        "violations": violation_summary(rec, rec.excess),
        "violations_if_compliant": violation_summary(rec, rec.excess_compliant),
        # AC runs: what the engine's linear model counts for the same behaviour (the difference is its
        # linearisation error); with a given pandapower net, on the engine's own constraints instead
        "violations_linear": None
        if rec.excess_linear is None
        else violation_summary(rec, rec.excess_linear, out.constraints_linear or None),
        "compliance": {
            "mean": round(float(np.mean([r["compliance"] for r in sites])), 4),
            "non_compliant_sites": sum(r["non_compliant"] for r in sites),
            "compliant_sites_below_99pct": [
                r["site"] for r in sites if not r["non_compliant"] and r["compliance"] < 0.99
            ],
        },
        "fallback": {
            "site_hours": round(sum(r["fallback_s"] for r in sites) / 3600.0, 2),
            "sites_in_fallback": sum(1 for r in sites if r["fallback_s"] > 0),
            "healthy_sites_in_fallback": healthy_in_fallback,
            "faults": faults,
        },
        "run": {
            "wall_s": round(out.wall_s, 1),
            "setup_wall_s": round(out.setup_wall_s, 1),
            "clock": out.scenario.clock.mode,
            "factor": out.scenario.clock.factor,
            "max_lag_s": max_lag_s,
            "lag_limit_s": lag_limit,
            "powerflow": out.powerflow,
        },
        "engine": engine,
        "server": {
            "requests": dict(out.stats.by_kind),
            "errors": dict(out.stats.errors),
            "blocked_by_outages": dict(out.stats.blocked),
            **_latency(out.stats.latencies_ms),
            "recomputes": out.recomputes,
        },
        "per_site": sites,
    }
