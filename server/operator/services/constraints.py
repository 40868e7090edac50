"""Every constraint of a network over the horizon, as the live engine computed it when it last published."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from gridshare.server.operator.services.networks import NetworkRef
from gridshare.store.queries.console import StoredReport, latest_report


@dataclass(frozen=True)
class ConstraintView:
    name: str  # e.g. thermal:dt-11, voltage:f2-d
    kind: str  # thermal | voltage
    asset: str  # branch or node
    direction: str  # export (reverse flow, voltage rise) | import (forward flow, voltage drop)
    unit: str  # W | pu
    rating: list[float | None]
    forecast: list[float | None]
    loading: list[float | None]
    headroom: list[float | None]  # engine: what was left for flexible sites before they were allocated
    spare: list[float | None]  # what is left with flexible sites at their limits (0 where binding)
    binding: list[bool]
    min_spare: float | None
    min_spare_at_s: int | None
    #: thermal: least spare capacity as a share of the rating there; voltage: of the band to 1 pu
    min_spare_pct: float | None
    min_headroom: float | None
    min_headroom_at_s: int | None
    #: thermal: smallest headroom as a share of the rating there; voltage: of the band to nominal
    min_headroom_pct: float | None
    peak_loading_pct: float | None  # thermal: highest loading over rating, %
    binding_intervals: int
    derated: bool  # the rating is below the asset's own (a derate or outage) somewhere in the horizon


@dataclass(frozen=True)
class ConstraintsReport:
    network: str
    set_id: int
    computed_s: int
    interval_s: int
    starts_s: list[int]
    fallback_set: bool
    constraints: list[ConstraintView]

    def worst(self) -> ConstraintView | None:
        """The constraint with the least spare capacity (share of rating or voltage band), then the one
        that binds longest: where the network is fullest."""
        ranked = [c for c in self.constraints if c.min_spare_pct is not None]
        return min(
            ranked, key=lambda c: (round(c.min_spare_pct or 0.0, 1), -c.binding_intervals), default=None
        )


def _clean(values: np.ndarray, digits: int) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else round(float(v), digits) for v in values]


def constraints_report(
    session: Session, net: NetworkRef, now_s: int, horizon_s: int | None = None
) -> ConstraintsReport | None:
    """From the newest report for this network version: intervals not yet ended, up to `horizon_s`."""
    stored = latest_report(session, net.model.id)
    if stored is None:
        return None
    nominal: dict[tuple[str, str], float] = {}
    for b in net.nf.network.branches:
        for direction in ("export", "import"):
            rating_w = None if b.rating is None else getattr(b.rating, f"{direction}_w")
            if rating_w is not None:
                nominal[(direction, f"thermal:{b.name}")] = rating_w
    return _view(net.name, stored, now_s, horizon_s, nominal)


def _view(
    name: str, stored: StoredReport, now_s: int, horizon_s: int | None, nominal: dict[tuple[str, str], float]
) -> ConstraintsReport:
    n = next(iter(stored.series.values())).n_intervals if stored.series else 0
    starts = stored.start_s + stored.interval_s * np.arange(n, dtype=np.int64)
    keep = starts + stored.interval_s > now_s
    if horizon_s is not None:
        keep &= starts < now_s + horizon_s
    views: list[ConstraintView] = []
    for direction, s in stored.series.items():
        for c, cname in enumerate(s.names):
            unit = "W" if s.kinds[c] == "thermal" else "pu"
            digits = 1 if unit == "W" else 5
            rating, forecast, value, headroom = (
                a[keep, c] for a in (s.rating, s.forecast, s.value, s.headroom)
            )
            binding = s.binding[keep, c]
            # Spare: how far the loading with flexible sites at their limits is from the limit, in the
            # direction that matters (a voltage drop constraint is on the low side).
            spare = value - rating if (unit == "pu" and direction == "import") else rating - value
            ok = np.isfinite(spare)
            low = int(np.argmin(np.where(ok, spare, np.inf))) if ok.any() else None
            spare_pct = None
            if low is not None:
                if unit == "W":
                    spare_pct = 100.0 * spare[low] / rating[low] if rating[low] > 0 else None
                else:
                    spare_pct = 100.0 * spare[low] / (abs(rating[low] - 1.0) or 1.0)
            finite = np.isfinite(headroom)
            at = int(np.argmin(np.where(finite, headroom, np.inf))) if finite.any() else None
            pct = peak = None
            if at is not None:
                if unit == "W":
                    pct = 100.0 * headroom[at] / rating[at] if rating[at] > 0 else None
                    ok = np.isfinite(value) & (rating > 0)
                    peak = float(np.max(value[ok] / rating[ok]) * 100.0) if ok.any() else None
                else:
                    band = abs(rating[at] - 1.0) or 1.0
                    pct = 100.0 * headroom[at] / band
            finite_rating = rating[np.isfinite(rating)]
            full = nominal.get((direction, cname), float(finite_rating.max()) if len(finite_rating) else 0.0)
            views.append(
                ConstraintView(
                    name=cname,
                    kind=s.kinds[c],
                    asset=s.assets[c],
                    direction=direction,
                    unit=unit,
                    rating=_clean(rating, digits),
                    forecast=_clean(forecast, digits),
                    loading=_clean(value, digits),
                    headroom=_clean(headroom, digits),
                    spare=_clean(spare, digits),
                    binding=[bool(b) for b in binding],
                    min_spare=None if low is None else round(float(spare[low]), digits),
                    min_spare_at_s=None if low is None else int(starts[keep][low]),
                    min_spare_pct=None if spare_pct is None else round(float(spare_pct), 2),
                    min_headroom=None if at is None else round(float(headroom[at]), digits),
                    min_headroom_at_s=None if at is None else int(starts[keep][at]),
                    min_headroom_pct=None if pct is None else round(float(pct), 2),
                    peak_loading_pct=None if peak is None else round(peak, 1),
                    binding_intervals=int(binding.sum()),
                    derated=bool(len(finite_rating) and finite_rating.min() < full * (1 - 1e-6)),
                )
            )
    return ConstraintsReport(
        network=name,
        set_id=stored.set_id,
        computed_s=stored.created_s,
        interval_s=stored.interval_s,
        starts_s=[int(t) for t in starts[keep]],
        fallback_set=stored.fallback,
        constraints=views,
    )
