"""The curtailment ledger: per site per day the energy its envelope held back, year to date, settled
against the site's curtailment guarantee (performance.curtailment says how it is estimated)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy.orm import Session

from gridshare.core.settings import Settings
from gridshare.envelopes.forecast import ProfileSpec, profile_forecast
from gridshare.grid.network import Site as NetworkSite
from gridshare.performance.curtailment import DayLedger, Settlement, curtailed_w, daily, settle
from gridshare.performance.timeline import LimitTimeline
from gridshare.server.operator.services.compliance import allowance_for
from gridshare.server.operator.services.networks import NetworkRef, registered_sites
from gridshare.store.models import Site
from gridshare.store.queries.console import limit_spans, net_power

METHOD = (
    "Per envelope interval: potential export = forecast generation - load (clear-sky PV at the network's "
    "location and the site's load profile), at most the agreed maximum; curtailed = potential above the "
    "limit in force. Where telemetry came in, an interval counts only if the site was at its limit "
    "(within the measurement tolerance). Imports likewise with load - generation. The guarantee is "
    "checked year to date against the potential export energy so far."
)


@dataclass(frozen=True)
class SiteLedger:
    site_id: int
    network: str
    network_site_id: str
    nmi: str | None
    year: int
    from_s: int | None  # first interval with recorded limits (None: none recorded this year)
    until_s: int
    days: list[DayLedger]
    settlement: Settlement


def year_bounds(tz: str, year: int) -> tuple[int, int]:
    zone = ZoneInfo(tz)
    start = datetime(year, 1, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC)
    return int(start.timestamp()), int(end.timestamp())


def current_year(tz: str, now_s: int) -> int:
    return datetime.fromtimestamp(now_s, UTC).astimezone(ZoneInfo(tz)).year


def site_ledger(
    session: Session,
    settings: Settings,
    net: NetworkRef,
    nsite: NetworkSite,
    site: Site,
    year: int,
    now_s: int,
) -> SiteLedger:
    network = net.nf.network
    interval_s = settings.envelope_interval_s
    year_start, year_end = year_bounds(network.timezone, year)
    until = min(year_end, now_s - now_s % interval_s)
    allowance, default_export, default_import = allowance_for(session, settings, site)
    spans = limit_spans(session, site.id, year_start, until)
    empty = settle(0.0, 0.0, nsite.guarantee)
    if not spans or until <= year_start:
        return SiteLedger(site.id, net.name, nsite.id, site.nmi, year, None, until, [], empty)
    first = max(year_start, min(s[0] for s in spans))
    first -= (first - year_start) % interval_s
    starts = np.arange(first, until, interval_s, dtype=np.int64)
    if len(starts) == 0:
        return SiteLedger(site.id, net.name, nsite.id, site.nmi, year, first, until, [], empty)
    timeline = LimitTimeline.build(spans, default_export, default_import)
    limit_export, limit_import = timeline.at(starts + interval_s // 2)
    profile = profile_forecast(
        {nsite.id: ProfileSpec(nsite.pv_w, nsite.load_w, nsite.load_profile)},
        datetime.fromtimestamp(int(starts[0]), UTC),
        interval_s,
        len(starts),
        tz=network.timezone,
        latitude_deg=network.latitude_deg,
        longitude_deg=network.longitude_deg,
        issued_at=datetime.fromtimestamp(int(starts[0]), UTC),  # shapes only: its age is never read
    )
    net_w = profile.generation_w[:, 0] - profile.load_w[:, 0]
    potential_export = np.clip(net_w, 0.0, nsite.max_export_w)
    potential_import = np.clip(-net_w, 0.0, nsite.max_import_w)
    measured = _interval_means(session, site.id, starts, interval_s)
    has = ~np.isnan(measured)
    finite_export = np.where(np.isfinite(limit_export), limit_export, np.inf)
    finite_import = np.where(np.isfinite(limit_import), limit_import, np.inf)
    cut_export = curtailed_w(finite_export, potential_export, measured, allowance.tolerance_w)
    cut_import = curtailed_w(finite_import, potential_import, -measured, allowance.tolerance_w)
    days = daily(
        starts, interval_s, network.timezone, potential_export, cut_export, potential_import, cut_import, has
    )
    total_cut = sum(d.curtailed_export_kwh for d in days)
    total_potential = sum(d.potential_export_kwh for d in days)
    return SiteLedger(
        site.id,
        net.name,
        nsite.id,
        site.nmi,
        year,
        int(first),
        until,
        days,
        settle(total_cut, total_potential, nsite.guarantee),
    )


def _interval_means(session: Session, site_id: int, starts: np.ndarray, interval_s: int) -> np.ndarray:
    """Mean measured net export per interval (W), NaN where no reading came in."""
    power = net_power(session, site_id, int(starts[0]), int(starts[-1]) + interval_s)
    out = np.full(len(starts), np.nan)
    if len(power.t_s) == 0:
        return out
    slot = (power.t_s - starts[0]) // interval_s
    sums = np.bincount(slot, weights=power.export_w, minlength=len(starts))[: len(starts)]
    counts = np.bincount(slot, minlength=len(starts))[: len(starts)]
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def network_ledger(
    session: Session, settings: Settings, net: NetworkRef, year: int, now_s: int
) -> list[SiteLedger]:
    """Every registered site of the network on a flexible (dynamic) agreement, in file order."""
    bound = registered_sites(session, net)
    return [
        site_ledger(session, settings, net, nsite, bound[nsite.id], year, now_s)
        for nsite in net.nf.sites
        if nsite.id in bound and nsite.agreement.flexible
    ]


CSV_COLUMNS = (
    "network",
    "network_site_id",
    "site_id",
    "nmi",
    "day",
    "intervals",
    "telemetry_intervals",
    "potential_export_kwh",
    "curtailed_export_kwh",
    "potential_import_kwh",
    "curtailed_import_kwh",
    "ytd_curtailed_export_kwh",
    "ytd_potential_export_kwh",
    "ytd_curtailed_pct",
    "guarantee_max_annual_pct",
    "ytd_beyond_guarantee_kwh",
    "ytd_compensation_owed",
    "currency",
)


def ledger_csv(ledgers: Iterable[SiteLedger]) -> str:
    """One row per site per day, with the year-to-date position after that day."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for ledger in ledgers:
        guarantee = ledger.settlement.guarantee
        cut = potential = 0.0
        for d in ledger.days:
            cut += d.curtailed_export_kwh
            potential += d.potential_export_kwh
            position = settle(cut, potential, guarantee)
            writer.writerow(
                {
                    "network": ledger.network,
                    "network_site_id": ledger.network_site_id,
                    "site_id": ledger.site_id,
                    "nmi": ledger.nmi or "",
                    "day": d.day.isoformat(),
                    "intervals": d.intervals,
                    "telemetry_intervals": d.telemetry_intervals,
                    "potential_export_kwh": _r(d.potential_export_kwh),
                    "curtailed_export_kwh": _r(d.curtailed_export_kwh),
                    "potential_import_kwh": _r(d.potential_import_kwh),
                    "curtailed_import_kwh": _r(d.curtailed_import_kwh),
                    "ytd_curtailed_export_kwh": _r(cut),
                    "ytd_potential_export_kwh": _r(potential),
                    "ytd_curtailed_pct": "" if position.curtailed_pct is None else _r(position.curtailed_pct),
                    "guarantee_max_annual_pct": "" if guarantee is None else guarantee.max_annual_pct,
                    "ytd_beyond_guarantee_kwh": _r(position.beyond_kwh),
                    "ytd_compensation_owed": _r(position.owed),
                    "currency": "" if guarantee is None else guarantee.currency,
                }
            )
    return out.getvalue()


def _r(x: float) -> float:
    return 0.0 if not math.isfinite(x) else round(x, 3)
