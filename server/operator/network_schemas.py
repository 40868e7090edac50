"""Bodies of the network, derate and envelope endpoints (units in the names, ranges checked here)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from gridshare.server.operator.schemas import MAX_EPOCH_S, Out, WriteBody

Kw = Annotated[float, Field(ge=0, le=1e7)]
EpochS = Annotated[int, Field(ge=0, le=MAX_EPOCH_S)]


class AssetOut(BaseModel):
    name: str
    kind: str
    from_node: str
    to_node: str
    export_kw: float | None
    import_kw: float | None
    rating_source: str


class NetworkOut(BaseModel):
    id: int
    name: str
    loaded_s: int
    loaded_by: str
    nodes: int
    sites: int
    dynamic_sites: int
    assets: list[AssetOut]


class RatingIn(WriteBody):
    """A new thermal rating for one asset; a direction left out keeps its present value."""

    export_kw: Kw | None = None
    import_kw: Annotated[Kw | None, Field(validate_default=True)] = None

    @field_validator("import_kw")
    @classmethod
    def _one_direction(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None and info.data.get("export_kw") is None:
            raise ValueError("give export_kw, import_kw or both")
        return value


class DerateIn(WriteBody):
    """Scale an asset's rating by `factor` (0 = outage) from `from_s` (default now) until `until_s`.

    A factor of 1 or more would change nothing, so it is refused rather than stored as a derate that
    never applies (an `until_s` already past is refused by services/derates.py, which knows the time).
    """

    asset: Annotated[str, Field(min_length=1, max_length=64)]
    factor: Annotated[float, Field(ge=0, lt=1, description="0 = outage; must be below 1 to derate.")]
    reason: Annotated[str, Field(max_length=200)] = ""
    from_s: EpochS | None = None
    until_s: EpochS | None = None

    @field_validator("until_s")
    @classmethod
    def _after_start(cls, value: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("from_s")
        if value is not None and start is not None and value <= start:
            raise ValueError("must be after from_s")
        return value


class DerateOut(Out):
    id: int
    asset: str
    factor: float
    reason: str
    from_s: int
    until_s: int | None
    created_s: int
    created_by: str
    cleared_s: int | None


class EnvelopeSetOut(Out):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_s: int
    start_s: int
    interval_s: int
    n_intervals: int
    policy: str
    reason: str
    status: str
    detail: dict[str, Any]
