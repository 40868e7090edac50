"""A site's safe DefaultDERControl values, as published and stored: fallback limits rounded for devices."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridshare.fallback.limits import FallbackLimit
from gridshare.fallback.ramp import MIN_GRAD_HUNDREDTHS


@dataclass(frozen=True)
class SafeDefault:
    """A site's computed safe DefaultDERControl values, in store units, with the reason for each."""

    network_site_id: str
    export_limit_w: float
    import_limit_w: float
    generation_limit_w: float
    load_limit_w: float
    set_grad_w_hundredths: int
    explain: str

    #: the fields an operator may lower but not raise without an override
    FIELDS = (
        "export_limit_w",
        "import_limit_w",
        "generation_limit_w",
        "load_limit_w",
        "set_grad_w_hundredths",
    )

    def as_json(self) -> dict[str, object]:
        return {
            "network_site_id": self.network_site_id,
            "export_limit_w": self.export_limit_w,
            "import_limit_w": self.import_limit_w,
            "generation_limit_w": self.generation_limit_w,
            "load_limit_w": self.load_limit_w,
            "set_grad_w_hundredths": self.set_grad_w_hundredths,
            "explain": self.explain,
        }

    @classmethod
    def from_json(cls, value: dict[str, object]) -> SafeDefault:
        return cls(**{k: value[k] for k in cls.__dataclass_fields__})  # type: ignore[arg-type]

    @classmethod
    def from_limit(cls, limit: FallbackLimit, step_w: float = 1.0) -> SafeDefault:
        """Limits rounded down to `step_w`, so a small shift elsewhere does not rewrite every default."""

        def down(w: float) -> float:
            return math.floor(w / step_w) * step_w

        return cls(
            limit.site_id,
            down(limit.export_w),
            down(limit.import_w),
            down(limit.generation_w),
            down(limit.load_w),
            limit.set_grad_w_hundredths,
            limit.explain(),
        )

    @classmethod
    def cut_off(cls, site_id: str, assets: str) -> SafeDefault:
        return cls(
            site_id,
            0.0,
            0.0,
            0.0,
            0.0,
            MIN_GRAD_HUNDREDTHS,
            f"{site_id}: behind an outage of {assets}: nothing",
        )
