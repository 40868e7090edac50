"""Bodies of the network, derate and envelope endpoints (units in the names, ranges checked here).

Power in the operator JSON API is in W (`*_w`), like controls and agreements. The rating endpoint and the
asset summary also carry the kW names they had first (`export_kw`, `import_kw`) as deprecated aliases,
so a client written against them keeps working; new clients use the W names. The network document
(PUT /network) stays in kW: it is the network file format of docs/network-format.md, not an API body.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import JsonDict

from gridshare.grid.units import W_PER_KW
from gridshare.server.operator.schemas import MAX_EPOCH_S, Out, WriteBody

Kw = Annotated[float, Field(ge=0, le=1e7)]
W = Annotated[float, Field(ge=0, le=1e10)]
_DEPRECATED_KW = "deprecated alias of {0}_w in kW (kept for older clients; give one of the two)"
_DEPRECATED: JsonDict = {"deprecated": True}  # marks the field in the OpenAPI document
EpochS = Annotated[int, Field(ge=0, le=MAX_EPOCH_S)]


class AssetOut(BaseModel):
    name: str
    kind: str
    from_node: str
    to_node: str
    export_w: float | None
    import_w: float | None
    rating_source: str
    export_kw: float | None = Field(description="deprecated: export_w in kW", json_schema_extra=_DEPRECATED)
    import_kw: float | None = Field(description="deprecated: import_w in kW", json_schema_extra=_DEPRECATED)


class NetworkOut(BaseModel):
    id: int = Field(description="the id of this version of the network (each load or rating is one)")
    name: str
    loaded_s: int
    loaded_by: str
    nodes: int
    sites: int
    dynamic_sites: int
    assets: list[AssetOut]
    moved_sites: dict[str, str] = Field(
        default_factory=dict,
        description="NMI -> the network it left: sites this load moved here (`move_sites=true`)",
    )


class RatingIn(WriteBody):
    """A new thermal rating for one asset in W; a direction left out keeps its present value."""

    export_w: W | None = None
    import_w: W | None = None
    export_kw: Kw | None = Field(
        None, description=_DEPRECATED_KW.format("export"), json_schema_extra=_DEPRECATED
    )
    import_kw: Kw | None = Field(
        None, description=_DEPRECATED_KW.format("import"), json_schema_extra=_DEPRECATED
    )

    @model_validator(mode="after")
    def _one_name_per_direction(self) -> RatingIn:
        for direction in ("export", "import"):
            if getattr(self, f"{direction}_w") is not None and getattr(self, f"{direction}_kw") is not None:
                raise ValueError(f"give {direction}_w or {direction}_kw, not both")
        if self.rating_w("export") is None and self.rating_w("import") is None:
            raise ValueError("give export_w, import_w or both")
        return self

    def rating_w(self, direction: str) -> float | None:
        """The new rating in one direction in W, whichever name was used (`_kw` is the deprecated alias)."""
        watts: float | None = getattr(self, f"{direction}_w")
        kw: float | None = getattr(self, f"{direction}_kw")
        return watts if kw is None else kw * W_PER_KW


class DerateIn(WriteBody):
    """Scale an asset's rating by `factor` (0 = outage) from `from_s` (default now) until `until_s`.

    A factor of 1 or more would change nothing, so it is refused rather than stored as a derate that
    never applies (an `until_s` already past is refused by services/derates.py, which knows the time).
    """

    asset: Annotated[str, Field(min_length=1, max_length=64)]
    network: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=64,
            description="The network whose asset it is; may be left out while only one network is loaded.",
        ),
    ] = None
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
    network: str | None


class EnvelopeSetOut(Out):
    model_config = ConfigDict(from_attributes=True)

    id: int
    network: str | None = Field(None, description="the network it was computed on (None: not known)")
    created_s: int
    start_s: int
    interval_s: int
    n_intervals: int
    policy: str
    reason: str
    status: str
    detail: dict[str, Any]
