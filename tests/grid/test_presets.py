"""Preset ratings against the figures printed in Dominion's DER interconnection parameters (2024)."""

from __future__ import annotations

import pytest

from gridshare.grid.network import NetworkError
from gridshare.grid.presets import (
    amps_for_kw,
    kw_for_amps,
    light_load_factor_mva,
    max_aggregate_der_mva,
    max_reverse_flow_mva,
    resolve_preset,
    typical_aggregate_der_mw,
)


def test_table1_reverse_flow_is_the_onan_rating() -> None:
    assert max_reverse_flow_mva("dominion/12-16-20") == pytest.approx(12.0)
    assert max_reverse_flow_mva("dominion/50.4-67-84") == pytest.approx(50.4)


def test_table1_aggregate_der_is_onan_plus_ten_percent_of_top_nameplate() -> None:
    assert max_aggregate_der_mva("dominion/12-16-20") == pytest.approx(14.0)
    assert max_aggregate_der_mva("dominion/50.4-67-84") == pytest.approx(58.8)


def test_measured_light_load_below_ten_percent_sets_the_llf() -> None:
    # 12/16/20 with a 1.2 MVA daytime light load: 12.0 + min(1.2, 2.0) = 13.2 MVA.
    assert max_aggregate_der_mva("dominion/12-16-20", daytime_light_load_mva=1.2) == pytest.approx(13.2)
    assert max_aggregate_der_mva(12.0, 20.0, 1.2) == pytest.approx(13.2)
    # A light load above 10 % of nameplate is capped at the 10 % figure.
    assert light_load_factor_mva(20.0, 5.0) == pytest.approx(2.0)


def test_circuit_current_conversion_matches_table2() -> None:
    # 24 MW at 34.5 kV, unity power factor: 24e6 / (sqrt(3) * 34.5e3) = 401.6 A.
    assert amps_for_kw(24_000, 34.5) == pytest.approx(401.6, abs=0.05)
    # Table 2 rows: 13 MW at 12.5 kV is 600 A, 7 MW at 13.2 kV is 306 A.
    assert amps_for_kw(13_000, 12.5) == pytest.approx(600, abs=0.5)
    assert amps_for_kw(7_000, 13.2) == pytest.approx(306, abs=0.5)


def test_table3_typical_aggregate_der_by_voltage() -> None:
    assert [typical_aggregate_der_mw(kv) for kv in (12.5, 13.2, 23.0, 34.5)] == [6.0, 7.0, 12.0, 24.0]
    with pytest.raises(KeyError, match="11 kV"):
        typical_aggregate_der_mw(11.0)


def test_transformer_preset_rating_in_kw_at_the_power_factor() -> None:
    rating = resolve_preset("dominion/12-16-20", base_kv=12.47, power_factor=1.0)
    assert rating.export_w / 1000 == pytest.approx(12_000)
    assert rating.import_w / 1000 == pytest.approx(20_000)
    at_095 = resolve_preset("dominion/12-16-20", base_kv=12.47, power_factor=0.95)
    assert at_095.export_w / 1000 == pytest.approx(11_400)


def test_circuit_presets_convert_amps_at_the_branch_voltage() -> None:
    aac = resolve_preset("dominion/477-aac", base_kv=34.5, power_factor=1.0)
    assert aac.export_w / 1000 == pytest.approx(3**0.5 * 34.5 * 644)
    standard = resolve_preset("dominion/standard-circuit", base_kv=34.5, power_factor=1.0)
    assert standard.import_w / 1000 == pytest.approx(kw_for_amps(600, 34.5))
    assert standard.import_w / 1000 == pytest.approx(35_854, rel=1e-3)  # Table 2: 36 MW is 600 A at 34.5 kV
    aggregate = resolve_preset("dominion/aggregate-der", base_kv=12.5, power_factor=1.0)
    assert aggregate.export_w / 1000 == pytest.approx(6_000)


def test_unknown_preset_names_the_field() -> None:
    with pytest.raises(NetworkError, match=r"branches\[3\]\.rating: unknown preset 'dominion/x'"):
        resolve_preset("dominion/x", 12.47, 1.0, "branches[3].rating")
