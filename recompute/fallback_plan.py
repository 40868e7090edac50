"""Fallback limits for the loaded network: from the network, agreements and standing derates only.

No forecast or telemetry goes in, so this is computable (and correct) exactly when the envelope
engine's inputs are not. Sites behind an outage get zero both ways, as the engine gives them. Limits
are rounded down to `envelope_resolution_w` (100 W by default), which only makes them safer and
keeps a small shift elsewhere on the feeder from rewriting every site's default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from gridshare.core.settings import Settings
from gridshare.fallback import FallbackSet, WorstCase, compute_fallback
from gridshare.fallback.safe_default import SafeDefault
from gridshare.grid.derates import apply_derates
from gridshare.grid.network import Network, Site
from gridshare.recompute.snapshot import RunInputs


@dataclass(frozen=True)
class FallbackPlan:
    network: Network  # with every standing derate applied
    isolated_nodes: frozenset[str]
    live_sites: list[Site]  # network sites not behind an outage
    fallback: FallbackSet
    by_site: dict[str, SafeDefault]  # by network site id: every dynamic site, cut-off ones included

    def dynamic_store_sites(self, inputs: RunInputs) -> dict[int, SafeDefault]:
        """Safe values by store site id, for the registered dynamic sites."""
        return {
            site.id: self.by_site[inputs.nmi_to_site_id[nmi]]
            for nmi, site in inputs.store_sites.items()
            if inputs.nmi_to_site_id[nmi] in self.by_site
        }


def worst_case(settings: Settings) -> WorstCase:
    return WorstCase(export_load_fraction=settings.fallback_export_load_fraction)


def plan_key(inputs: RunInputs, settings: Settings) -> tuple[object, ...]:
    """Everything fallback limits depend on: the same key means the same limits (no recomputation)."""
    return (
        inputs.model.id,
        tuple(sorted((d.id, d.asset, d.factor) for d in inputs.standing)),
        tuple(sorted(inputs.rated_w.items())),
        inputs.agreements,
        settings.allocation_policy,
        settings.fallback_margin_fraction,
        settings.fallback_export_load_fraction,
    )


def fallback_fingerprint(inputs: RunInputs, settings: Settings, marker: tuple[object, ...]) -> str:
    """A digest of everything the published defaults depend on; unchanged means nothing to write.

    The limits' own inputs (`plan_key`: network version, hence its agreements, and the operator's;
    derates in force or scheduled; device ratings; settings), the rounding step, which store site
    each network site is, the envelope program, and `marker` (anyone's writes to the site defaults, see
    `snapshot.defaults_marker`): an operator's change must be re-checked against the safe values.
    """
    sites = sorted((site.id, nmi) for nmi, site in inputs.store_sites.items())
    program = inputs.program.id if inputs.program is not None else None
    basis = (plan_key(inputs, settings), settings.envelope_resolution_w, program, sites, marker)
    return hashlib.sha256(repr(basis).encode()).hexdigest()


def plan_fallback(inputs: RunInputs, settings: Settings) -> FallbackPlan:
    """Fallback limits on the network with every standing derate (now or planned) applied."""
    derated = apply_derates(inputs.nf.network, inputs.standing)
    live = [s for s in inputs.nf.sites if s.node not in derated.isolated_nodes]
    fallback = compute_fallback(
        derated.network,
        live,
        policy=settings.allocation_policy,
        worst_case=worst_case(settings),
        margin_fraction=settings.fallback_margin_fraction,
        rated_w=inputs.rated_w,
    )
    step_w = settings.envelope_resolution_w
    by_site = {k: SafeDefault.from_limit(v, step_w) for k, v in fallback.limits.items()}
    outages = ", ".join(sorted({d.asset for d in inputs.standing if d.factor == 0})) or "an asset"
    for s in inputs.nf.sites:
        if s.agreement.flexible and s.node in derated.isolated_nodes:
            by_site[s.id] = SafeDefault.cut_off(s.id, outages)
    return FallbackPlan(derated.network, derated.isolated_nodes, live, fallback, by_site)


def sites_behind(network: Network, assets: Iterable[str], sites: Iterable[Site]) -> set[str]:
    """Network site ids at nodes fed through any of `assets` (unknown assets are ignored)."""
    names = {b.name for b in network.branches}
    nodes: set[str] = set()
    for asset in assets:
        if asset in names:
            nodes.update(network.downstream_nodes(asset))
    return {s.id for s in sites if s.node in nodes}
