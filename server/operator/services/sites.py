"""One site as an operator sees it: its envelope over the horizon and what set each limit, its
DefaultDERControl and why, when its device last reached the server and how often it polls, and its
latest telemetry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from gridshare.core.settings import Settings
from gridshare.grid.agreements import Dynamic
from gridshare.grid.network import Network
from gridshare.grid.network import Site as NetworkSite
from gridshare.grid.sensitivity import voltage_sensitivity_pu_per_w
from gridshare.grid.units import W_PER_KW
from gridshare.server.operator.services.networks import NetworkRef, VersionKey, network_site_of, version_key
from gridshare.store.console_models import DeviceContact
from gridshare.store.envelope_blocks import decode_envelope
from gridshare.store.models import DefaultDerControl, Site, SiteEnvelope
from gridshare.store.publication.fallback_defaults import override_for, safe_default_for
from gridshare.store.queries.console import (
    StoredReport,
    current_blocks,
    current_set,
    is_fallback,
    latest_report,
    net_power,
)
from gridshare.store.queries.programs import default_control, first_program_id
from gridshare.store.queries.runtime_settings import poll_rate_overrides

POLLING, LATE, PRESUMED_FALLBACK, NEVER = "polling", "late", "presumed on fallback", "never connected"


@dataclass(frozen=True)
class ContactView:
    state: str  # polling | late | presumed on fallback | never connected
    last_s: int | None
    first_s: int | None
    requests: int
    derc_polls: int
    last_derc_s: int | None
    poll_interval_s: float | None  # observed, smoothed
    advertised_poll_s: int  # the DERControlList poll rate the server advertises
    silent_s: int | None


def derc_poll_rate_s(session: Session, settings: Settings) -> int:
    return int(poll_rate_overrides(session).get("derp") or settings.poll_rates_s["derp"])


def contact_view(contact: DeviceContact | None, now_s: int, advertised_s: int, timeout_s: int) -> ContactView:
    if contact is None:
        return ContactView(NEVER, None, None, 0, 0, None, None, advertised_s, None)
    silent = max(0, now_s - contact.last_s)
    state = POLLING if silent <= 3 * advertised_s else (LATE if silent < timeout_s else PRESUMED_FALLBACK)
    return ContactView(
        state=state,
        last_s=contact.last_s,
        first_s=contact.first_s,
        requests=int(contact.requests),
        derc_polls=int(contact.derc_polls),
        last_derc_s=contact.last_derc_s,
        poll_interval_s=None if contact.poll_interval_s is None else round(contact.poll_interval_s, 1),
        advertised_poll_s=advertised_s,
        silent_s=silent,
    )


@dataclass(frozen=True)
class EnvelopeInterval:
    start_s: int
    end_s: int
    export_limit_w: float | None
    import_limit_w: float | None
    generation_limit_w: float | None
    load_limit_w: float | None
    source: str  # firm | dynamic | fallback | outage | default
    export_set_by: str
    import_set_by: str


@dataclass(frozen=True)
class DefaultView:
    export_limit_w: float | None
    import_limit_w: float | None
    generation_limit_w: float | None
    load_limit_w: float | None
    set_grad_w_hundredths: int | None
    scope: str  # site | program | none
    why: str
    overridden: bool


@dataclass(frozen=True)
class TelemetryView:
    time_s: int
    export_w: float  # net export at the connection point; import is negative
    received_s: int | None


@dataclass(frozen=True)
class SiteView:
    site_id: int
    lfdi: str
    nmi: str | None
    enabled: bool
    aggregator_id: int | None
    network: str | None
    network_site_id: str | None
    node: str | None
    agreement: str  # kind and terms in words
    agreement_kind: str | None
    max_export_w: float | None
    max_import_w: float | None
    set_id: int | None
    envelope: list[EnvelopeInterval]
    default: DefaultView
    contact: ContactView
    telemetry: TelemetryView | None


def _kw(watts: float) -> float:
    """A model figure (W) in kW, for the console's sentences."""
    return watts / W_PER_KW


def describe_agreement(site: NetworkSite | None) -> str:
    if site is None:
        return "not in any loaded network (no NMI match)"
    a = site.agreement
    text = {
        "firm": f"firm: {_kw(site.max_export_w):g} kW export, {_kw(site.max_import_w):g} kW import",
        "limited": "limited to fixed values",
        "scheduled": "scheduled limits by month and hour",
        "staggered": "staggered: a lower limit until an upgrade date",
        "dynamic": "dynamic operating envelope",
    }.get(a.kind, a.kind)
    if isinstance(a, Dynamic):
        floors = [f"export floor {_kw(a.export_floor_w):g} kW"] if a.export_floor_w else []
        floors += [f"import floor {_kw(a.import_floor_w):g} kW"] if a.import_floor_w else []
        text += f" up to {_kw(site.max_export_w):g} kW export / {_kw(site.max_import_w):g} kW import"
        if floors:
            text += " (" + ", ".join(floors) + ")"
    if site.guarantee is not None:
        g = site.guarantee
        text += (
            f"; curtailment guaranteed at most {g.max_annual_pct:g} % a year, "
            f"{g.price_per_kwh:g} {g.currency}/kWh beyond"
        )
    return text


def default_view(session: Session, site: Site) -> DefaultView:
    program_id = first_program_id(session)
    row: DefaultDerControl | None = default_control(session, site, program_id) if program_id else None
    safe = safe_default_for(session, site.id)
    override = override_for(session, site.id)
    if row is None:
        return DefaultView(None, None, None, None, None, "none", "no DefaultDERControl is published", False)
    if safe is not None:
        why = f"computed safe fallback: {safe.explain}"
    elif row.site_id is None:
        why = "the program-wide default (default_export_limit_w); this site has no computed fallback"
    else:
        why = "set by an operator for this site"
    if override:
        why += f"; raised above the safe values by {override.get('actor', 'an operator')} (override)"
    return DefaultView(
        export_limit_w=row.export_limit_w,
        import_limit_w=row.import_limit_w,
        generation_limit_w=row.generation_limit_w,
        load_limit_w=row.load_limit_w,
        set_grad_w_hundredths=row.set_grad_w_hundredths,
        scope="site" if row.site_id is not None else "program",
        why=why,
        overridden=bool(override),
    )


_SENSITIVITIES: dict[VersionKey, tuple[np.ndarray, np.ndarray, dict[str, int]]] = {}


def _sensitivities(version: VersionKey, network: Network) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Which branches carry a node's injection and how it moves each voltage (per stored network version)."""
    found = _SENSITIVITIES.get(version)
    if found is None:
        if len(_SENSITIVITIES) > 8:
            _SENSITIVITIES.clear()
        branch = {b.name: i for i, b in enumerate(network.branches)}
        found = _SENSITIVITIES[version] = (
            network.topology.on_path,
            voltage_sensitivity_pu_per_w(network),
            branch,
        )
    return found


def _set_by(
    net: NetworkRef, nsite: NetworkSite, report: StoredReport | None, start_s: int, direction: str
) -> list[str]:
    """Binding constraints this site's injection moves, in the interval starting at `start_s`."""
    if report is None or direction not in report.series:
        return []
    series = report.series[direction]
    t = (start_s - report.start_s) // report.interval_s
    if t < 0 or t >= series.n_intervals:
        return []
    on_path, volt, branch = _sensitivities(version_key(net.model), net.nf.network)
    node = net.nf.network.topology.node_index[nsite.node]
    node_of = net.nf.network.topology.node_index
    found: list[tuple[int, float, str]] = []
    for c in np.flatnonzero(series.binding[t]):
        kind, asset = series.kinds[c], series.assets[c]
        if kind == "thermal" and asset in branch and on_path[branch[asset], node]:
            found.append(
                (
                    0,
                    -float(on_path[:, node_of[net.nf.network.branches[branch[asset]].to_node]].sum()),
                    f"{asset} rating",
                )
            )
        elif kind == "voltage" and asset in node_of and volt[node_of[asset], node] > 0:
            found.append((1, -float(volt[node_of[asset], node]), f"voltage at {asset}"))
    return [name for _, _, name in sorted(found)]


def envelope_view(
    session: Session,
    settings: Settings,
    site: Site,
    net: NetworkRef | None,
    nsite: NetworkSite | None,
    now_s: int,
) -> tuple[int | None, list[EnvelopeInterval]]:
    """The published envelope from now on, one row per envelope interval, with what set each limit."""
    found = current_blocks(session, site.id)
    if found is None:
        record = current_set(session, net.model.name) if net is not None else None
        return (record.id if record is not None else None), []
    record = found[0]
    blob = session.get(SiteEnvelope, (record.id, site.id))
    if blob is None:
        return record.id, []
    blocks, gross = decode_envelope(blob.blocks)
    report = latest_report(session, net.model.id) if net is not None else None
    fallback = is_fallback(record, site.id)
    interval_s = record.interval_s or 300
    out: list[EnvelopeInterval] = []
    ends = blocks["start"] + blocks["duration"]
    if not len(blocks):
        return record.id, []
    first = max(int(blocks["start"].min()), now_s - now_s % interval_s)
    for start in range(first, int(ends.max()), interval_s):
        covering = np.flatnonzero((blocks["start"] <= start) & (ends > start))
        if not len(covering):
            continue
        b = blocks[covering[np.argmax(blocks["created"][covering])]]
        export_w, import_w = float(b["export_w"]), float(b["import_w"])
        if nsite is not None and not nsite.agreement.flexible:
            source = (
                nsite.agreement.kind if nsite.agreement.kind == "firm" else f"fixed ({nsite.agreement.kind})"
            )
            export_by = import_by = "connection agreement"
        elif export_w == 0 and import_w == 0 and gross is not None and gross.generation_w == 0:
            source, export_by, import_by = "outage", "outage upstream", "outage upstream"
        elif fallback:
            source, export_by, import_by = "fallback", "fallback limits", "fallback limits"
        else:
            source = "dynamic"
            export_by = import_by = "-"
            if nsite is not None and net is not None:
                names = {d: _set_by(net, nsite, report, start, d) for d in ("export", "import")}
                step = max(
                    settings.envelope_resolution_w,
                    settings.envelope_resolution_pct / 100 * max(nsite.max_export_w, nsite.max_import_w),
                )
                export_by = _explain(names["export"], export_w, nsite.max_export_w, step)
                import_by = _explain(names["import"], import_w, nsite.max_import_w, step)
        out.append(
            EnvelopeInterval(
                start_s=start,
                end_s=start + interval_s,
                export_limit_w=export_w,
                import_limit_w=import_w,
                generation_limit_w=None if gross is None else gross.generation_w,
                load_limit_w=None if gross is None else gross.load_w,
                source=source,
                export_set_by=export_by,
                import_set_by=import_by,
            )
        )
    return record.id, out


def _explain(binding: list[str], limit_w: float, max_w: float, step_w: float) -> str:
    if limit_w >= max_w - 1e-6:
        return "agreed maximum"
    if limit_w >= max_w - step_w and not binding:
        return f"agreed maximum, rounded down to {step_w / W_PER_KW:g} kW steps"
    if binding:
        return ", ".join(binding[:2])
    return "its share of the feeder (floor or step limit)"


def site_view(
    session: Session, settings: Settings, site: Site, now_s: int, contact: DeviceContact | None
) -> SiteView:
    bound = network_site_of(session, site)
    net, nsite = bound if bound is not None else (None, None)
    set_id, envelope = envelope_view(session, settings, site, net, nsite, now_s)
    power = net_power(session, site.id, now_s - 86400, now_s + 1)
    telemetry = (
        TelemetryView(int(power.t_s[-1]), float(power.export_w[-1]), power.last_received_s)
        if len(power.t_s)
        else None
    )
    return SiteView(
        site_id=site.id,
        lfdi=site.lfdi,
        nmi=site.nmi,
        enabled=site.enabled,
        aggregator_id=site.aggregator_id,
        network=net.name if net else None,
        network_site_id=nsite.id if nsite else None,
        node=nsite.node if nsite else None,
        agreement=describe_agreement(nsite),
        agreement_kind=nsite.agreement.kind if nsite else None,
        max_export_w=nsite.max_export_w if nsite else None,
        max_import_w=nsite.max_import_w if nsite else None,
        set_id=set_id,
        envelope=envelope,
        default=default_view(session, site),
        contact=contact_view(
            contact, now_s, derc_poll_rate_s(session, settings), settings.device_fallback_timeout_s
        ),
        telemetry=telemetry,
    )
