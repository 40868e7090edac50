"""Operator API bodies for DER controls, default controls and curves (2030.5 §10.10 ranges checked here).

The DERControlBase fields and their descriptions come from core.der_control_fields, so the API, the
store and the wire name the same fields; write bodies follow the rules of schemas.py.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from gridshare.core.der_control_fields import (
    BY_NAME,
    CONTROL_BASE_NAMES,
    DEFAULT_CONTROL_NAMES,
    check_attributes,
)
from gridshare.server.operator.schemas import (
    INT32_MAX,
    UINT16_MAX,
    ActivePowerW,
    Description,
    EpochS,
    OneHourS,
    Out,
    WriteBody,
)
from gridshare.store.queries.controls import ControlValues

# --- controls --------------------------------------------------------------------------------------------

#: The operator API names DERControlBase fields as the store does (core.der_control_fields).
CONTROL_VALUE_FIELDS = CONTROL_BASE_NAMES


def _wire(name: str, unit: str = "") -> str:
    """A field's description: its 2030.5 / CSIP-AUS element (from the one table) and unit."""
    field = BY_NAME[name]
    element = f"csipaus:{field.element}" if field.csipaus else field.element
    return f"{element}, {unit}" if unit else element


class ControlValuesIn(WriteBody):
    """DERControlBase: CSIP-AUS DOE limits in W (ActivePower on the wire) and the 2030.5 modes."""

    import_limit_w: ActivePowerW | None = Field(None, description=_wire("import_limit_w"))
    export_limit_w: ActivePowerW | None = Field(None, description=_wire("export_limit_w"))
    generation_limit_w: ActivePowerW | None = Field(None, description=_wire("generation_limit_w"))
    load_limit_w: ActivePowerW | None = Field(None, description=_wire("load_limit_w"))
    connect: bool | None = Field(None, description=_wire("connect"))
    energize: bool | None = Field(None, description=_wire("energize"))
    fixed_w_pct_hundredths: int | None = Field(
        None,
        ge=-10000,
        le=10000,
        description=_wire("fixed_w_pct_hundredths", "signed hundredths of a percent"),
    )
    max_w_pct_hundredths: int | None = Field(
        None, ge=0, le=10000, description=_wire("max_w_pct_hundredths", "hundredths of a percent")
    )
    ramp_tms_hundredths_s: int | None = Field(
        None, ge=0, le=UINT16_MAX, description=_wire("ramp_tms_hundredths_s", "hundredths of a second")
    )

    def values(self) -> ControlValues:
        return ControlValues(**{name: getattr(self, name) for name in CONTROL_VALUE_FIELDS})

    def any_value(self) -> bool:
        return any(getattr(self, name) is not None for name in CONTROL_VALUE_FIELDS)


check_attributes("ControlValuesIn", set(ControlValuesIn.model_fields), CONTROL_BASE_NAMES)


class ControlIn(ControlValuesIn):
    start_s: EpochS | None = Field(None, description="interval start; default now")
    duration_s: int = Field(gt=0, le=INT32_MAX)
    randomize_start_s: OneHourS | None = None
    randomize_duration_s: OneHourS | None = None
    response_required: int = Field(0, ge=0, le=7, description="2030.5 responseRequired bits 0-2")
    description: Description = ""


class CancelIn(WriteBody):
    randomized: bool = Field(False, description="status 3, cancelled with randomization")


class ControlOut(Out):
    id: int
    mrid: str
    site_id: int
    program_id: int
    description: str
    creation_s: int
    start_s: int
    duration_s: int
    randomize_start_s: int | None
    randomize_duration_s: int | None
    response_required: int
    cancelled_s: int | None
    version: int
    status: str = ""
    import_limit_w: float | None
    export_limit_w: float | None
    generation_limit_w: float | None
    load_limit_w: float | None
    connect: bool | None
    energize: bool | None
    fixed_w_pct_hundredths: int | None
    max_w_pct_hundredths: int | None
    ramp_tms_hundredths_s: int | None


class CancelledOut(BaseModel):
    cancelled: list[int]


class DefaultControlIn(ControlValuesIn):
    set_grad_w_hundredths: int | None = Field(
        None,
        ge=0,
        le=UINT16_MAX,
        description=_wire("set_grad_w_hundredths", "hundredths of a percent per second"),
    )
    description: Description = ""


class DefaultControlOut(Out):
    id: int
    mrid: str
    program_id: int
    site_id: int | None
    description: str
    version: int
    changed_s: int
    set_grad_w_hundredths: int | None
    import_limit_w: float | None
    export_limit_w: float | None
    generation_limit_w: float | None
    load_limit_w: float | None
    connect: bool | None
    energize: bool | None
    fixed_w_pct_hundredths: int | None
    max_w_pct_hundredths: int | None
    ramp_tms_hundredths_s: int | None


# --- curves ----------------------------------------------------------------------------------------------

Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class CurveIn(WriteBody):
    curve_type: int = Field(ge=0, le=14, description="2030.5 DERCurveType: 11 volt-var, 12 volt-watt")
    points: list[tuple[Int32, Int32]] = Field(min_length=1, max_length=10, description="[[x, y], ...]")
    x_multiplier: int = Field(0, ge=-9, le=9)
    y_multiplier: int = Field(0, ge=-9, le=9)
    y_ref_type: int = Field(3, ge=0, le=7, description="2030.5 DERUnitRefType")
    description: Description = ""

    @field_validator("points")
    @classmethod
    def _x_increasing(cls, points: list[tuple[int, int]]) -> list[tuple[int, int]]:
        xs = [x for x, _ in points]
        if any(b <= a for a, b in pairwise(xs)):
            raise ValueError("x values must be strictly increasing")
        return points


class CurveOut(Out):
    id: int
    mrid: str
    program_id: int
    description: str
    curve_type: int
    points: list[list[int]]
    x_multiplier: int
    y_multiplier: int
    y_ref_type: int
    creation_s: int


for _model in (ControlOut, DefaultControlOut):
    check_attributes(
        _model.__name__,
        {n for n in _model.model_fields if n in BY_NAME and n not in DEFAULT_CONTROL_NAMES},
        CONTROL_BASE_NAMES,
    )
