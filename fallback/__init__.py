"""Conservative fallback limits (CSIP-AUS DefaultDERControl) that are safe whatever the forecast.

Pure functions over numpy, like `envelopes/`; nothing here knows about HTTP or SQL. The entry point
is `compute_fallback`; the method and its worst case are described in docs/fallback.md.
"""

from gridshare.fallback.explain import SetBy
from gridshare.fallback.limits import (
    FallbackError,
    FallbackLimit,
    FallbackSet,
    WorstCaseCheck,
    compute_fallback,
)
from gridshare.fallback.ramp import RampLimits, ramp_rates, site_rating_w
from gridshare.fallback.worst_case import WorstCase, background_injection_w, peak_agreed_w

__all__ = [
    "FallbackError",
    "FallbackLimit",
    "FallbackSet",
    "RampLimits",
    "SetBy",
    "WorstCase",
    "WorstCaseCheck",
    "background_injection_w",
    "compute_fallback",
    "peak_agreed_w",
    "ramp_rates",
    "site_rating_w",
]
