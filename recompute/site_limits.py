"""Which registered sites a publication writes, and the gross limits each of their blocks carries."""

from __future__ import annotations

import math

from gridshare.fallback.ramp import site_rating_w
from gridshare.recompute.fallback_plan import FallbackPlan
from gridshare.recompute.snapshot import RunInputs
from gridshare.store.envelope_blocks import GrossLimits
from gridshare.store.models import Site


def gross_limits(inputs: RunInputs, plan: FallbackPlan | None = None) -> dict[str, GrossLimits]:
    """Gross limits (opModGenLimW, opModLoadLimW) for every envelope block, by network site id.

    Dynamic envelopes carry each site's unconstrained level, P_j (the larger of its agreed maxima and
    its devices' reported ratings, as the ramp uses): a device that takes every mode an event leaves
    unset from its DefaultDERControl (CSIP-AUS devices and our simulator do) would otherwise stay at
    the default's generation limit, the fallback export, under a generous envelope. Fallback-valued
    envelopes (`plan` given) stand in for the default, so dynamic sites carry the default's own gross
    limits there.
    """
    out = {}
    for s in inputs.nf.sites:
        p_w = float(math.floor(site_rating_w(s, inputs.rated_w)))
        out[s.id] = GrossLimits(p_w, p_w)
    if plan is not None:
        for site_id, safe in plan.by_site.items():
            out[site_id] = GrossLimits(safe.generation_limit_w, safe.load_limit_w)
    return out


def split_sites(
    inputs: RunInputs, isolated: frozenset[str], only: set[str] | None = None
) -> tuple[dict[str, Site], list[Site]]:
    """Registered sites (matched to the network by NMI, optionally only some network site ids) split into
    those that get envelopes, keyed by network site id, and those cut off by an outage."""
    by_nmi = {s.nmi: s for s in inputs.nf.sites if s.nmi}
    wanted = {nmi: site for nmi, site in inputs.store_sites.items() if only is None or by_nmi[nmi].id in only}
    live = {by_nmi[nmi].id: site for nmi, site in wanted.items() if by_nmi[nmi].node not in isolated}
    cut_off = [site for nmi, site in wanted.items() if by_nmi[nmi].node in isolated]
    return live, cut_off
