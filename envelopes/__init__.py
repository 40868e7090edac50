"""Dynamic operating envelope engine: network model, forecasts, agreements and headroom.

Pure functions over numpy arrays; nothing here knows about HTTP or SQL. The usual entry
points are `load_network_file` and `compute_envelopes`.
"""

from gridshare.envelopes.compute import POLICIES, EnvelopeSet, compute_envelopes, next_interval_boundary
from gridshare.envelopes.forecast import Forecast, Telemetry, persistence_forecast, profile_forecast
from gridshare.grid.agreements import (
    AgreementBounds,
    Dynamic,
    Firm,
    IntervalTimes,
    Limited,
    Scheduled,
    Staggered,
    agreement_bounds,
)
from gridshare.grid.netfile import NetworkFile, load_network_file, parse_network_document
from gridshare.grid.network import Branch, Network, NetworkError, Node, Rating, Site

__all__ = [
    "POLICIES",
    "AgreementBounds",
    "Branch",
    "Dynamic",
    "EnvelopeSet",
    "Firm",
    "Forecast",
    "IntervalTimes",
    "Limited",
    "Network",
    "NetworkError",
    "NetworkFile",
    "Node",
    "Rating",
    "Scheduled",
    "Site",
    "Staggered",
    "Telemetry",
    "agreement_bounds",
    "compute_envelopes",
    "load_network_file",
    "next_interval_boundary",
    "parse_network_document",
    "persistence_forecast",
    "profile_forecast",
]
