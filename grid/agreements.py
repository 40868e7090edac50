"""Connection agreements: what each site has agreed to, turned into per-interval bounds.

The connection methods follow Ameren's flexible-interconnection report (2025): limited
import/export (one value each way), scheduled (seasonal/time-of-day, up to 288 points =
12 months x 24 hours), staggered (a temporary lower limit until an upgrade date) and
dynamically managed (DOE), optionally over a static floor and, for loads, a guaranteed
base import. A firm connection is held to the site's agreed maxima. Only dynamic sites are
flexible; every other kind is a fixed flow at its (time-varying) limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import numpy as np

from gridshare.grid.localtime import local_month_hour
from gridshare.grid.units import W_PER_KW

MONTHS = 12
HOURS = 24


@dataclass(frozen=True)
class IntervalTimes:
    """Interval starts in UTC epoch seconds with their local month (1-12) and hour (0-23).

    Computed once per run: schedules are written in local time, so DST matters to them.
    """

    epoch_s: np.ndarray  # (n,) int64
    month: np.ndarray  # (n,) int, 1..12 local
    hour: np.ndarray  # (n,) int, 0..23 local

    @classmethod
    def build(cls, starts: Sequence[datetime] | np.ndarray, tz: str = "UTC") -> IntervalTimes:
        """Accept aware datetimes or UTC epoch seconds."""
        if isinstance(starts, np.ndarray) and starts.dtype.kind in "iuf":
            epoch = starts.astype(np.int64)
        else:
            epoch = np.array([_epoch_s(s) for s in starts], dtype=np.int64)
        # one zone lookup a day, not one per interval (grid/localtime.py)
        month, hour = local_month_hour(epoch, tz)
        return cls(epoch_s=epoch, month=month, hour=hour)

    def __len__(self) -> int:
        return len(self.epoch_s)


def _epoch_s(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"interval start {moment.isoformat()} has no time zone; use UTC")
    return int(moment.timestamp())


@dataclass(frozen=True)
class AgreementBounds:
    """Per-interval floor and cap per direction, in watts; floor == cap for fixed sites."""

    export_floor_w: np.ndarray
    export_cap_w: np.ndarray
    import_floor_w: np.ndarray
    import_cap_w: np.ndarray
    flexible: bool


def _cap(value_w: float | None, max_w: float) -> float:
    """An agreed value never exceeds the site's agreed maximum; None means 'the maximum'."""
    return max_w if value_w is None else min(value_w, max_w)


def _kw(value_w: float) -> float:
    """A value of the model (W) as the network file writes it (kW): problems name the file's fields."""
    return value_w / W_PER_KW


def _check(path: str, value_w: float | None) -> list[tuple[str, str]]:
    """`path` is the network file's field (in kW), so the message quotes the value in kW."""
    if value_w is None or (math.isfinite(value_w) and value_w >= 0):
        return []
    return [(path, f"must be >= 0 kW, got {_kw(value_w)}")]


@dataclass(frozen=True)
class Firm:
    """A conventional connection: held to the site's agreed maxima, never managed."""

    kind: ClassVar[str] = "firm"
    flexible: ClassVar[bool] = False

    def problems(self, max_export_w: float, max_import_w: float) -> list[tuple[str, str]]:
        return []

    def limits_w(
        self, times: IntervalTimes, max_export_w: float, max_import_w: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(times)
        return np.full(n, max_export_w), np.full(n, max_import_w)


@dataclass(frozen=True)
class Limited:
    """One export value and one import value (None = the site maximum)."""

    export_w: float | None = None
    import_w: float | None = None
    kind: ClassVar[str] = "limited"
    flexible: ClassVar[bool] = False

    def problems(self, max_export_w: float, max_import_w: float) -> list[tuple[str, str]]:
        return _check("export_kw", self.export_w) + _check("import_kw", self.import_w)

    def limits_w(
        self, times: IntervalTimes, max_export_w: float, max_import_w: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(times)
        return np.full(n, _cap(self.export_w, max_export_w)), np.full(n, _cap(self.import_w, max_import_w))


def schedule_grid(values: object) -> np.ndarray:
    """Expand a schedule to 12 x 24 values in its own unit (kW in the network file): a scalar,
    24 hourly values (every month), 12 monthly values, 12 lists of 24, or 288 values month-major.
    Raises ValueError saying which shapes are accepted.
    """
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError("must be a number or a list of numbers") from exc
    if arr.ndim == 0:
        grid = np.full((MONTHS, HOURS), float(arr))
    elif arr.shape == (HOURS,):
        grid = np.tile(arr, (MONTHS, 1))
    elif arr.shape == (MONTHS,):
        grid = np.repeat(arr[:, None], HOURS, axis=1)
    elif arr.shape == (MONTHS, HOURS):
        grid = arr.copy()
    elif arr.shape == (MONTHS * HOURS,):
        grid = arr.reshape(MONTHS, HOURS)
    else:
        raise ValueError(
            f"has shape {arr.shape}; give one value, 24 (hourly), 12 (monthly), 12 x 24 or 288 values"
        )
    if not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError("values must be finite and >= 0 kW")
    return grid


@dataclass(frozen=True)
class Scheduled:
    """A limit per local month-hour (12 x 24 grid in W); None = the site maximum all year."""

    export_w: np.ndarray | None = None
    import_w: np.ndarray | None = None
    kind: ClassVar[str] = "scheduled"
    flexible: ClassVar[bool] = False

    def problems(self, max_export_w: float, max_import_w: float) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for name in ("export_w", "import_w"):
            grid = getattr(self, name)
            if grid is not None and (np.shape(grid) != (MONTHS, HOURS) or np.any(np.asarray(grid) < 0)):
                found.append((name.replace("_w", "_kw"), "must be a 12 x 24 grid of values >= 0 kW"))
        return found

    def limits_w(
        self, times: IntervalTimes, max_export_w: float, max_import_w: float
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._lookup(self.export_w, times, max_export_w), self._lookup(
            self.import_w, times, max_import_w
        )

    @staticmethod
    def _lookup(grid: np.ndarray | None, times: IntervalTimes, max_w: float) -> np.ndarray:
        if grid is None:
            return np.full(len(times), max_w)
        return np.minimum(np.asarray(grid)[times.month - 1, times.hour], max_w)


@dataclass(frozen=True)
class Staggered:
    """A temporary limit until `switch_at` (e.g. an upgrade's completion), then a higher one."""

    switch_at: datetime
    before_export_w: float | None = None
    before_import_w: float | None = None
    after_export_w: float | None = None
    after_import_w: float | None = None
    kind: ClassVar[str] = "staggered"
    flexible: ClassVar[bool] = False

    def problems(self, max_export_w: float, max_import_w: float) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for name in ("before_export_w", "before_import_w", "after_export_w", "after_import_w"):
            found += _check(
                name.replace("_export", ".export").replace("_import", ".import").replace("_w", "_kw"),
                getattr(self, name),
            )
        if self.switch_at.tzinfo is None:
            found.append(("switch_at", "needs a time zone"))
        return found

    def limits_w(
        self, times: IntervalTimes, max_export_w: float, max_import_w: float
    ) -> tuple[np.ndarray, np.ndarray]:
        after = times.epoch_s >= int(self.switch_at.timestamp())
        export = np.where(
            after, _cap(self.after_export_w, max_export_w), _cap(self.before_export_w, max_export_w)
        )
        imp = np.where(
            after, _cap(self.after_import_w, max_import_w), _cap(self.before_import_w, max_import_w)
        )
        return export.astype(float), imp.astype(float)


@dataclass(frozen=True)
class Dynamic:
    """Managed by dynamic operating envelopes between a static floor and the site maxima.

    `import_floor_w` is the guaranteed base import a load keeps however congested the feeder is.
    """

    export_floor_w: float = 0.0
    import_floor_w: float = 0.0
    kind: ClassVar[str] = "dynamic"
    flexible: ClassVar[bool] = True

    def problems(self, max_export_w: float, max_import_w: float) -> list[tuple[str, str]]:
        found = _check("export_floor_kw", self.export_floor_w) + _check(
            "import_floor_kw", self.import_floor_w
        )
        if self.export_floor_w > max_export_w:
            found.append(
                (
                    "export_floor_kw",
                    f"{_kw(self.export_floor_w)} kW exceeds the site's max_export_kw {_kw(max_export_w)}",
                )
            )
        if self.import_floor_w > max_import_w:
            found.append(
                (
                    "import_floor_kw",
                    f"{_kw(self.import_floor_w)} kW exceeds the site's max_import_kw {_kw(max_import_w)}",
                )
            )
        return found

    def limits_w(
        self, times: IntervalTimes, max_export_w: float, max_import_w: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(times)
        return np.full(n, max_export_w), np.full(n, max_import_w)


Agreement = Firm | Limited | Scheduled | Staggered | Dynamic
AGREEMENT_KINDS: dict[str, type] = {cls.kind: cls for cls in (Firm, Limited, Scheduled, Staggered, Dynamic)}


def agreement_bounds(
    agreement: Agreement,
    times: IntervalTimes | Sequence[datetime],
    max_export_w: float,
    max_import_w: float,
    tz: str = "UTC",
) -> AgreementBounds:
    """Floor and cap per direction for each interval, in W.

    Fixed sites get floor == cap (we assume they run at their limit: the worst case the network
    must carry). Dynamic sites get their static floors and the agreed maxima as cap.
    """
    if not isinstance(times, IntervalTimes):
        times = IntervalTimes.build(times, tz)
    export_w, import_w = agreement.limits_w(times, max_export_w, max_import_w)
    export_cap_w = np.asarray(export_w, dtype=float)
    import_cap_w = np.asarray(import_w, dtype=float)
    if isinstance(agreement, Dynamic):
        export_floor_w = np.minimum(np.full(len(times), agreement.export_floor_w), export_cap_w)
        import_floor_w = np.minimum(np.full(len(times), agreement.import_floor_w), import_cap_w)
    else:
        export_floor_w, import_floor_w = export_cap_w.copy(), import_cap_w.copy()
    return AgreementBounds(
        export_floor_w=export_floor_w,
        export_cap_w=export_cap_w,
        import_floor_w=import_floor_w,
        import_cap_w=import_cap_w,
        flexible=agreement.flexible,
    )


@dataclass(frozen=True)
class CurtailmentGuarantee:
    """A flexible connection's promise on curtailment: at most `max_annual_pct` of the energy the site
    could have exported in a year, and `price_per_kwh` paid for every kWh curtailed beyond it.

    UK Power Networks offers flexible connections on these terms (cited in Ameren's flexible
    interconnection report, 2025, section on LIFO curtailment estimates); the price is in `currency`.
    """

    max_annual_pct: float
    price_per_kwh: float = 0.0
    currency: str = "USD"
