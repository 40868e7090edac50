"""The DERControlBase fields GridShare serves: one table read by the store, the wire format and the API.

IEEE 2030.5-2018 §10.10 (DERControlBase) and CSIP-AUS v1.2 §2.3 (the csipaus:opMod*LimW dynamic
operating envelope limits). Each row names the field as the store and the operator API spell it (with its
unit), the element the wire uses, and how its value is written; adding a field here is the one edit the
encoder, the operator schema and the store-side value records follow (store/models.py and
store/queries/controls.py keep typed attributes for mypy and check them against this table on import).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Encoding(enum.Enum):
    """How a field's value is written on the wire."""

    #: ActivePower (multiplier + value) in the csipaus namespace; the store keeps watts.
    active_power_w = "active_power_w"
    #: xs:boolean.
    boolean = "boolean"
    #: an integer as stored (hundredths of a percent, hundredths of a second...).
    integer = "integer"


@dataclass(frozen=True)
class ControlField:
    name: str
    element: str
    encoding: Encoding
    csipaus: bool = False
    description: str = ""


#: DERControlBase, in XSD sequence order (elements of the csipaus extension come after the 2030.5 ones).
CONTROL_BASE_FIELDS: tuple[ControlField, ...] = (
    ControlField("connect", "opModConnect", Encoding.boolean, description="connect to the grid"),
    ControlField("energize", "opModEnergize", Encoding.boolean, description="energize the DER"),
    ControlField(
        "fixed_w_pct_hundredths",
        "opModFixedW",
        Encoding.integer,
        description="fixed active power, signed hundredths of a percent of setMaxW",
    ),
    ControlField(
        "max_w_pct_hundredths",
        "opModMaxLimW",
        Encoding.integer,
        description="maximum active power, hundredths of a percent of setMaxW",
    ),
    ControlField("ramp_tms_hundredths_s", "rampTms", Encoding.integer, description="hundredths of a second"),
    ControlField("import_limit_w", "opModImpLimW", Encoding.active_power_w, csipaus=True),
    ControlField("export_limit_w", "opModExpLimW", Encoding.active_power_w, csipaus=True),
    ControlField("generation_limit_w", "opModGenLimW", Encoding.active_power_w, csipaus=True),
    ControlField("load_limit_w", "opModLoadLimW", Encoding.active_power_w, csipaus=True),
)

#: DefaultDERControl's own fields after its DERControlBase (2030.5 §10.10 DefaultDERControl).
DEFAULT_CONTROL_FIELDS: tuple[ControlField, ...] = (
    ControlField(
        "es_delay_hundredths_s", "setESDelay", Encoding.integer, description="hundredths of a second"
    ),
    ControlField(
        "set_grad_w_hundredths",
        "setGradW",
        Encoding.integer,
        description="ramp rate, hundredths of a percent of setMaxW per second",
    ),
    ControlField(
        "set_soft_grad_w_hundredths",
        "setSoftGradW",
        Encoding.integer,
        description="soft-start ramp rate, hundredths of a percent of setMaxW per second",
    ),
)

CONTROL_BASE_NAMES: tuple[str, ...] = tuple(f.name for f in CONTROL_BASE_FIELDS)
DEFAULT_CONTROL_NAMES: tuple[str, ...] = tuple(f.name for f in DEFAULT_CONTROL_FIELDS)
BY_NAME: dict[str, ControlField] = {f.name: f for f in (*CONTROL_BASE_FIELDS, *DEFAULT_CONTROL_FIELDS)}


def check_attributes(owner: str, names: set[str], expected: tuple[str, ...]) -> None:
    """Fail at import when a typed copy of the table (a model, a value record) drifts from it."""
    if names != set(expected):
        missing, extra = set(expected) - names, names - set(expected)
        raise RuntimeError(
            f"{owner} disagrees with core.der_control_fields: missing {missing}, extra {extra}"
        )
