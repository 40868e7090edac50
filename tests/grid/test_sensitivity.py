"""LinDistFlow sensitivities on small feeders, checked against hand arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from gridshare.envelopes.compute import compute_envelopes
from gridshare.grid.agreements import Dynamic
from gridshare.grid.network import Branch, Network, Node, Rating, Site
from gridshare.grid.sensitivity import flow_sensitivity, node_voltages_pu, voltage_sensitivity_pu_per_w
from gridshare.grid.units import W_PER_KW as KW

KV = 12.47
V2 = (KV * 1000) ** 2  # 155,500,900 V^2


def _line(power_factor: float = 1.0, *, r2: float = 1.0) -> Network:
    """root --(0.5+j1.0 ohm)--> a --(r2+j2.0 ohm)--> b, all at 12.47 kV."""
    return Network(
        nodes=(Node("root"), Node("a"), Node("b")),
        branches=(
            Branch("ra", "root", "a", r_ohm=0.5, x_ohm=1.0, base_kv=KV),
            Branch("ab", "a", "b", r_ohm=r2, x_ohm=2.0, base_kv=KV),
        ),
        power_factor=power_factor,
    )


def test_voltage_sensitivity_is_common_path_resistance_over_v_squared() -> None:
    s = voltage_sensitivity_pu_per_w(_line())
    # Rows/cols: root, a, b. Injection at b raises a by R_ra/V^2, and b by (R_ra + R_ab)/V^2.
    assert s[1, 1] == pytest.approx(0.5 / V2)
    assert s[1, 2] == pytest.approx(0.5 / V2)
    assert s[2, 1] == pytest.approx(0.5 / V2)
    assert s[2, 2] == pytest.approx(1.5 / V2)
    assert s[0].tolist() == [0.0, 0.0, 0.0]  # the source holds its voltage
    # 1 MW at b: 1.5 ohm * 1e6 W / 155.5e6 V^2 = 0.009646 pu.
    assert s[2, 2] * 1e6 == pytest.approx(0.009646, abs=1e-6)


def test_reactive_power_at_the_power_factor_adds_x_tan_phi() -> None:
    s = voltage_sensitivity_pu_per_w(_line(power_factor=0.8))  # tan(acos 0.8) = 0.75
    assert s[2, 2] == pytest.approx((1.5 + 0.75 * 3.0) / V2)
    assert s[1, 2] == pytest.approx((0.5 + 0.75 * 1.0) / V2)


def test_flows_are_sums_of_downstream_injections() -> None:
    net = _line()
    flows = np.array([[2_000.0, -500.0, 1_500.0]]) @ flow_sensitivity(net).T
    # Branch ra carries a and b (1,000 W reverse), branch ab carries b only.
    assert flows.tolist() == [[1_000.0, 1_500.0]]
    v = node_voltages_pu(net, np.array([[0.0, 0.0, 1e6]]))
    assert v[0, 2] == pytest.approx(1.0 + 1.5e6 / V2)


def test_regulated_bus_cuts_the_transformer_out_of_voltage_sums() -> None:
    net = Network(
        nodes=(Node("hv"), Node("bus"), Node("end")),
        branches=(
            Branch("tx", "hv", "bus", r_ohm=0.1, x_ohm=0.6, base_kv=KV, regulate_pu=1.02),
            Branch("line", "bus", "end", r_ohm=2.0, base_kv=KV),
        ),
    )
    s = voltage_sensitivity_pu_per_w(net)
    assert s[2, 2] == pytest.approx(2.0 / V2)
    assert s[1, 2] == 0.0
    assert node_voltages_pu(net, np.zeros((1, 3)))[0].tolist() == pytest.approx([1.0, 1.02, 1.02])


def _voltage_limited_feeder(thermal_kw: float) -> tuple[Network, list[Site]]:
    """A 10 ohm line at 12.47 kV, 1.00 pu source, 1.05 pu limit: one 5 MW solar farm at the end."""
    net = Network(
        nodes=(Node("source"), Node("end", v_min_pu=0.95, v_max_pu=1.05)),
        branches=(
            Branch(
                "line",
                "source",
                "end",
                r_ohm=10.0,
                base_kv=KV,
                rating=Rating(thermal_kw * KW, thermal_kw * KW),
            ),
        ),
    )
    farm = Site("farm", "end", Dynamic(), max_export_w=5_000 * KW, max_import_w=5_000 * KW)
    return net, [farm]


def test_voltage_not_thermal_binds_on_a_long_feeder() -> None:
    net, sites = _voltage_limited_feeder(thermal_kw=10_000)
    es = compute_envelopes(net, sites, datetime(2026, 6, 1, tzinfo=UTC), horizon_s=600, interval_s=300)
    # 0.05 pu of rise over 10 ohm: P = 0.05 * V^2 / R = 0.05 * 155.5e6 / 10 = 777.5 kW.
    assert es.export_limit_w[:, 0] == pytest.approx([777_504.5, 777_504.5], rel=1e-6)
    report = es.constraints["export"]
    binding = dict(zip(report.names, report.binding[0], strict=True))
    assert binding == {"thermal:line": False, "voltage:end": True}
    # Importing pulls the end down to 0.95 pu: the same 777.5 kW.
    assert es.import_limit_w[0, 0] == pytest.approx(777_504.5, rel=1e-6)


def test_thermal_binds_when_the_rating_is_lower_than_the_voltage_limit() -> None:
    net, sites = _voltage_limited_feeder(thermal_kw=500)
    es = compute_envelopes(net, sites, datetime(2026, 6, 1, tzinfo=UTC), horizon_s=300, interval_s=300)
    assert es.export_limit_w[0, 0] == pytest.approx(500_000)
    report = es.constraints["export"]
    assert dict(zip(report.names, report.binding[0], strict=True)) == {
        "thermal:line": True,
        "voltage:end": False,
    }
