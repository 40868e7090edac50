"""What each console page shows, assembled from the services (server/operator/services/) and charts."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from gridshare.core.settings import Settings
from gridshare.grid.network import Branch
from gridshare.server.operator.services import compliance, curtailment, sites
from gridshare.server.operator.services.constraints import ConstraintsReport, ConstraintView
from gridshare.server.operator.services.networks import NetworkRef, registered_sites
from gridshare.server.operator.web.charts import Band, Series, sparkline, time_chart
from gridshare.store.models import Site
from gridshare.store.queries.console import contacts, limit_spans, net_power


@dataclass
class SiteChip:
    network_site_id: str
    site_id: int | None
    state: str  # contact state, or "no device"
    agreement_kind: str


@dataclass
class TreeRow:
    depth: int
    branch: Branch | None  # None for the root node
    node: str
    export: ConstraintView | None = None  # thermal, reverse flow
    imp: ConstraintView | None = None  # thermal, forward flow
    voltage: list[ConstraintView] = field(default_factory=list)
    sites: list[SiteChip] = field(default_factory=list)
    derate: str = ""
    spark_export: str = ""
    spark_import: str = ""

    @property
    def min_pct(self) -> float | None:
        values = [c.min_spare_pct for c in (self.export, self.imp, *self.voltage) if c is not None]
        found = [v for v in values if v is not None]
        return min(found) if found else None


def _pct_series(c: ConstraintView) -> list[float | None]:
    out: list[float | None] = []
    for h, r in zip(c.spare, c.rating, strict=True):
        if h is None or r is None:
            out.append(None)
        elif c.unit == "W":
            out.append(100.0 * h / r if r > 0 else None)
        else:
            band = abs(r - 1.0) or 1.0
            out.append(100.0 * h / band)
    return out


def network_tree(
    session: Session, settings: Settings, net: NetworkRef, report: ConstraintsReport | None, now_s: int
) -> list[TreeRow]:
    network = net.nf.network
    by_name: dict[tuple[str, str], ConstraintView] = {}
    if report is not None:
        for c in report.constraints:
            by_name[(c.direction, c.name)] = c
    bound = registered_sites(session, net)
    seen = contacts(session, [s.id for s in bound.values()])
    advertised = sites.derc_poll_rate_s(session, settings)
    chips: dict[str, list[SiteChip]] = {}
    for s in net.nf.sites:
        row = bound.get(s.id)
        state = (
            "no device"
            if row is None
            else sites.contact_view(
                seen.get(row.id), now_s, advertised, settings.device_fallback_timeout_s
            ).state
        )
        chips.setdefault(s.node, []).append(SiteChip(s.id, row.id if row else None, state, s.agreement.kind))
    from gridshare.server.operator.services.networks import derates

    active, planned = derates(session, net, now_s)
    derate_text: dict[str, str] = {}
    for d in active:
        derate_text[d.asset] = "outage" if d.factor == 0 else f"derated to {d.factor:.0%}"
    for d in planned:
        derate_text.setdefault(
            d.asset, "planned " + ("outage" if d.factor == 0 else f"derate {d.factor:.0%}")
        )
    children: dict[str, list[Branch]] = {}
    for b in network.branches:
        children.setdefault(b.from_node, []).append(b)
    root = network.nodes[network.topology.root].name
    rows: list[TreeRow] = []

    def voltage_views(node: str) -> list[ConstraintView]:
        return [c for d in ("export", "import") if (c := by_name.get((d, f"voltage:{node}"))) is not None]

    def walk(node: str, depth: int, branch: Branch | None) -> None:
        row = TreeRow(depth, branch, node, voltage=voltage_views(node), sites=chips.get(node, []))
        if branch is not None:
            row.export = by_name.get(("export", f"thermal:{branch.name}"))
            row.imp = by_name.get(("import", f"thermal:{branch.name}"))
            row.derate = derate_text.get(branch.name, "")
        for c, attr, cls in (
            (row.export, "spark_export", "spark-export"),
            (row.imp, "spark_import", "spark-import"),
        ):
            if c is not None:
                title = f"{c.name} {c.direction}: spare capacity as % of rating over the next 24 h"
                setattr(row, attr, sparkline(_pct_series(c), c.binding, cls=cls, title=title))
        rows.append(row)
        for b in children.get(node, []):
            walk(b.to_node, depth + 1, b)

    walk(root, 0, None)
    return rows


def constraint_chart(report: ConstraintsReport, c: ConstraintView, tz: str, now_s: int) -> str:
    """Rating, forecast loading and loading with flexible sites over the horizon; binding shaded."""
    starts = report.starts_s
    end = (starts[-1] + report.interval_s) if starts else now_s
    bands = [
        Band(t, t + report.interval_s, "band-binding", "binding")
        for t, b in zip(starts, c.binding, strict=True)
        if b
    ]
    title = f"{c.name} ({c.direction}): loading against rating, next 24 h"
    return time_chart(
        [
            Series("forecast before flexible sites", starts, c.forecast, "s-forecast"),
            Series("with flexible sites at their limits", starts, c.loading, "s-loading"),
            Series("rating (derates applied)", starts, c.rating, "s-rating", step=True),  # on top
        ],
        start_s=starts[0] if starts else now_s,
        end_s=end,
        tz=tz,
        unit=c.unit,
        bands=bands,
        now_s=now_s,
        title=title,
        width=960,
        height=250,
    )


def site_chart(session: Session, site: Site, view: sites.SiteView, tz: str, now_s: int) -> str:
    """The last 24 h (limits in force, measured net export) and the next 24 h (published envelope)."""
    start, end = now_s - 86400, now_s + 86400
    spans = sorted(limit_spans(session, site.id, start, end), key=lambda s: s[0])
    t: list[int] = []
    export: list[float | None] = []
    imp: list[float | None] = []
    for a, b, e, i, _, _ in spans:
        if t and t[-1] < a:  # a gap: the device was on its default
            t.append(t[-1])
            export.append(view.default.export_limit_w)
            imp.append(-view.default.import_limit_w if view.default.import_limit_w is not None else None)
        t.append(a)
        export.append(e)
        imp.append(-i)
        t.append(b)
        export.append(e)
        imp.append(-i)
    power = net_power(session, site.id, start, now_s + 1)
    series = [
        Series("export limit", t, export, "s-export"),
        Series("import limit (shown negative)", t, imp, "s-import"),
        Series(
            "measured net export",
            [int(x) for x in power.t_s],
            [float(x) for x in power.export_w],
            "s-measured",
            points=True,
        ),
    ]
    hlines = []
    if view.default.export_limit_w is not None:
        hlines.append((view.default.export_limit_w, "s-default", "DefaultDERControl export limit"))
    return time_chart(
        series,
        start_s=start,
        end_s=end,
        tz=tz,
        unit="W",
        hlines=hlines,
        now_s=now_s,
        title="Limits in force and published, and measured net export (import negative)",
        width=960,
        height=270,
        zero_line=True,
    )


def site_page(session: Session, settings: Settings, site: Site, now_s: int) -> dict[str, object]:
    view = sites.site_view(session, settings, site, now_s, contacts(session, [site.id]).get(site.id))
    bound = sites.network_site_of(session, site)
    tz = bound[0].nf.network.timezone if bound else "UTC"
    assessed = compliance.site_compliance(session, settings, site, now_s - 86400, now_s)
    ledger = None
    if bound is not None:
        net, nsite = bound
        year = curtailment.current_year(tz, now_s)
        ledger = curtailment.site_ledger(session, settings, net, nsite, site, year, now_s)
    blocks = _merge_envelope(view.envelope)
    return {
        "view": view,
        "tz": tz,
        "chart": site_chart(session, site, view, tz, now_s),
        "compliance": assessed,
        "ledger": ledger,
        "blocks": blocks,
    }


def _merge_envelope(rows: list[sites.EnvelopeInterval]) -> list[sites.EnvelopeInterval]:
    """Consecutive intervals with the same limits and reasons, as one row."""
    out: list[sites.EnvelopeInterval] = []
    for r in rows:
        last = out[-1] if out else None
        same = last is not None and (
            last.end_s == r.start_s
            and (
                last.export_limit_w,
                last.import_limit_w,
                last.source,
                last.export_set_by,
                last.import_set_by,
            )
            == (r.export_limit_w, r.import_limit_w, r.source, r.export_set_by, r.import_set_by)
        )
        if same and last is not None:
            out[-1] = sites.EnvelopeInterval(**{**last.__dict__, "end_s": r.end_s})
        else:
            out.append(r)
    return out
