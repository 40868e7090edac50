"""Named thermal ratings from Dominion Energy's DER interconnection parameters (2024).

A network file may say `rating: dominion/12-16-20` instead of numbers. Figures cited:

* Section 2.3 / Table 1: reverse flow on a substation transformer is limited to its ONAN
  (base) rating; the maximum aggregate DER is ONAN plus a light-load factor,
  LLF = min(daytime light load, 10 % of the top nameplate rating).
* Section 2.4.1: 477 AAC conductor is rated 644 A; the standard circuit maximum is 600 A
  (disconnects and bushings); Table 2 converts amps to MW as I = P / (sqrt(3) * V_LL).
* Section 2.4.2 / Table 3: typical aggregate intermittent DER per circuit: 12.5 kV 6 MW,
  13.2 kV 7 MW, 23 kV 12 MW, 34.5 kV 24 MW; ESS charging is capped at 24 MW.

The document speaks only to reverse flow on transformers; for forward flow (import) we use
the top (forced-cooled) nameplate rating, which is the transformer's maximum load rating.
MVA figures are converted to W (the model's unit) at the network's assumed power factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridshare.grid.network import NetworkError, Rating
from gridshare.grid.units import W_PER_KW, W_PER_MW

STANDARD_CIRCUIT_A = 600.0  # Dominion standard circuit maximum (2.4.1)
AAC_477_A = 644.0  # Dominion 477 AAC conductor rating (2.4.1)
ESS_CHARGING_LIMIT_MW = 24.0  # strict import limit for ESS on distribution (2.4.2.1)
LIGHT_LOAD_FRACTION = 0.10  # LLF reference value: 10 % of the top nameplate rating (2.3)

# Table 3: typical aggregate intermittent DER per circuit, MW, keyed by circuit kV.
TYPICAL_AGGREGATE_DER_MW: dict[float, float] = {12.5: 6.0, 13.2: 7.0, 23.0: 12.0, 34.5: 24.0}


@dataclass(frozen=True)
class TransformerPreset:
    """Nameplate stages (MVA) and the document's maximum reverse flow (MVA)."""

    nameplate_mva: tuple[float, ...]
    reverse_flow_mva: float

    @property
    def top_mva(self) -> float:
        return max(self.nameplate_mva)


# Table 1 (Transformer Chart - DER Limits). Reverse flow = ONAN, except the non-standard
# 6.5 and 6.5/7 MVA units, whose figure is the lower of ONAN and the base impedance test rating.
# The table prints 20.2 for 20.1/26.8/33.6; we keep the ONAN 20.1 (the lower, safe value).
TRANSFORMER_PRESETS: dict[str, TransformerPreset] = {
    "dominion/6.5": TransformerPreset((6.5,), 3.9),
    "dominion/6.5-7": TransformerPreset((6.5, 7.0), 4.2),
    "dominion/6-8-10": TransformerPreset((6.0, 8.0, 10.0), 6.0),
    "dominion/7.2-9.3-12": TransformerPreset((7.2, 9.3, 12.0), 7.2),
    "dominion/8.4-10.2-14": TransformerPreset((8.4, 10.2, 14.0), 8.4),
    "dominion/12-16-20": TransformerPreset((12.0, 16.0, 20.0), 12.0),
    "dominion/13.4-17.9-22.4": TransformerPreset((13.4, 17.9, 22.4), 13.4),
    "dominion/20.1-26.8-33.6": TransformerPreset((20.1, 26.8, 33.6), 20.1),
    "dominion/24-40": TransformerPreset((24.0, 40.0), 24.0),
    "dominion/27-36-45": TransformerPreset((27.0, 36.0, 45.0), 27.0),
    "dominion/30-40-50": TransformerPreset((30.0, 40.0, 50.0), 30.0),
    "dominion/33.6-44.8-56": TransformerPreset((33.6, 44.8, 56.0), 33.6),
    "dominion/45-60-75": TransformerPreset((45.0, 60.0, 75.0), 45.0),
    "dominion/50.4-67-84": TransformerPreset((50.4, 67.0, 84.0), 50.4),
}

# Circuit presets in amps per direction, converted at the branch's base voltage.
CIRCUIT_PRESETS_A: dict[str, float] = {
    "dominion/477-aac": AAC_477_A,
    "dominion/standard-circuit": STANDARD_CIRCUIT_A,
}

AGGREGATE_DER_PRESET = "dominion/aggregate-der"


def preset_names() -> list[str]:
    """Every name `rating:` accepts, for error messages and docs."""
    return sorted([*TRANSFORMER_PRESETS, *CIRCUIT_PRESETS_A, AGGREGATE_DER_PRESET])


def max_reverse_flow_mva(preset: str) -> float:
    """Maximum reverse flow (the ONAN rating) of a Table 1 transformer."""
    return _transformer(preset).reverse_flow_mva


def light_load_factor_mva(top_nameplate_mva: float, daytime_light_load_mva: float | None = None) -> float:
    """LLF = min(daytime light load, 10 % of top nameplate); unknown light load -> the 10 % figure."""
    cap = LIGHT_LOAD_FRACTION * top_nameplate_mva
    return cap if daytime_light_load_mva is None else min(daytime_light_load_mva, cap)


def max_aggregate_der_mva(
    preset_or_onan: str | float,
    top_nameplate_mva: float | None = None,
    daytime_light_load_mva: float | None = None,
) -> float:
    """Maximum aggregate DER on a substation transformer: ONAN + light-load factor.

    Pass a preset name (`"dominion/12-16-20"`) or the ONAN MVA together with the top nameplate MVA.
    """
    if isinstance(preset_or_onan, str):
        spec = _transformer(preset_or_onan)
        onan, top = spec.reverse_flow_mva, spec.top_mva
    else:
        if top_nameplate_mva is None:
            raise ValueError("top_nameplate_mva is required when passing an ONAN rating")
        onan, top = float(preset_or_onan), top_nameplate_mva
    return onan + light_load_factor_mva(top, daytime_light_load_mva)


def amps_for_kw(kw: float, v_ll_kv: float, power_factor: float = 1.0) -> float:
    """Three-phase line current for a real power: I = P / (sqrt(3) V_LL pf)."""
    return kw / (math.sqrt(3.0) * v_ll_kv * power_factor)


def kw_for_amps(amps: float, v_ll_kv: float, power_factor: float = 1.0) -> float:
    """Real power a three-phase circuit carries at a current: P = sqrt(3) V_LL I pf."""
    return math.sqrt(3.0) * v_ll_kv * amps * power_factor


def w_for_amps(amps: float, v_ll_kv: float, power_factor: float = 1.0) -> float:
    """`kw_for_amps` in watts, for the model (which holds W)."""
    return kw_for_amps(amps, v_ll_kv, power_factor) * W_PER_KW


def typical_aggregate_der_mw(v_ll_kv: float) -> float:
    """Table 3 guidance for a circuit voltage; raises KeyError for voltages the table lacks."""
    for kv, mw in TYPICAL_AGGREGATE_DER_MW.items():
        if math.isclose(kv, v_ll_kv, rel_tol=0.01):
            return mw
    known = ", ".join(f"{kv:g} kV" for kv in TYPICAL_AGGREGATE_DER_MW)
    raise KeyError(f"no Dominion aggregate DER guidance for {v_ll_kv:g} kV (known: {known})")


def _transformer(preset: str) -> TransformerPreset:
    try:
        return TRANSFORMER_PRESETS[preset]
    except KeyError:
        raise KeyError(f"unknown transformer preset {preset!r}") from None


def resolve_preset(name: str, base_kv: float, power_factor: float, path: str = "rating") -> Rating:
    """Turn a preset name into a Rating in W for a branch at `base_kv`.

    Raises NetworkError naming `path`, so a bad name in a file points at its line.
    """
    if name in TRANSFORMER_PRESETS:
        spec = TRANSFORMER_PRESETS[name]
        return Rating(
            export_w=spec.reverse_flow_mva * W_PER_MW * power_factor,
            import_w=spec.top_mva * W_PER_MW * power_factor,
            source=name,
        )
    if name in CIRCUIT_PRESETS_A:
        watts = w_for_amps(CIRCUIT_PRESETS_A[name], base_kv, power_factor)
        return Rating(export_w=watts, import_w=watts, source=name)
    if name == AGGREGATE_DER_PRESET:
        try:
            export_mw = typical_aggregate_der_mw(base_kv)
        except KeyError as exc:
            raise NetworkError(f"{exc.args[0]}; set base_kv to one of those or give kW", path) from None
        return Rating(
            export_w=export_mw * W_PER_MW,
            import_w=w_for_amps(STANDARD_CIRCUIT_A, base_kv, power_factor),
            source=name,
        )
    raise NetworkError(f"unknown preset {name!r} (known: {', '.join(preset_names())})", path)
