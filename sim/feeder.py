"""A synthetic suburban feeder as a network document (docs/network-format.md), sized by a few numbers.

Scenarios need fleets of 50 or 5,000 sites without anyone typing them in. The feeder is a zone
transformer, one 11 kV feeder and a row of distribution transformers, each with a street of houses
on its LV bus. Reverse power through each distribution transformer is limited well below its
forward rating (the usual result of a protection or voltage study), so rooftop PV makes the
transformers the binding constraints at midday while evening load never binds. Most houses have a
dynamic connection with a 1.5 kW export floor (the CSIP-AUS default) and a base import equal to
their peak load; a share of older connections are firm.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Agreed export of a dynamic house: the cap of its envelope.
DYNAMIC_EXPORT_KW = 10.0


def suburb_document(
    sites: int = 50,
    transformers: int = 5,
    seed: int = 1,
    firm_share: float = 0.2,
    export_kva_per_site: float = 4.5,
    tranche_share: float = 0.6,
    name: str = "suburb",
    latitude_deg: float = -27.47,
    longitude_deg: float = 153.03,
    timezone: str = "Australia/Brisbane",
) -> dict[str, Any]:
    """The network document: `sites` houses spread evenly over `transformers` LV buses.

    `export_kva_per_site` sets each transformer's reverse-power rating per house on it: lower
    means more curtailment. `tranche_share` of each street's agreed export (10 kW per dynamic house)
    forms the transformer's tranche under the `tranche` rule: the earlier connections share pro-rata,
    the later ones queue behind them.
    """
    if sites < 1 or transformers < 1:
        raise ValueError("a suburb needs at least one site and one transformer")
    rng = np.random.default_rng(seed)
    nodes: list[dict[str, Any]] = [
        {"name": "grid"},
        {"name": "zone-bus", "v_min_pu": 0.95, "v_max_pu": 1.06},
    ]
    branches: list[dict[str, Any]] = [
        {
            "name": "zone-tx",
            "kind": "transformer",
            "from": "grid",
            "to": "zone-bus",
            "base_kv": 11.0,
            "r_ohm": 0.02,
            "x_ohm": 0.35,
            "rating": {"kva": max(2000.0, sites * 30.0)},
            "regulate_pu": 1.0,
        }
    ]
    per_tx = [len(part) for part in np.array_split(np.arange(sites), transformers)]
    doc_sites: list[dict[str, Any]] = []
    previous_mv = "zone-bus"
    index = 0
    for t, count in enumerate(per_tx, start=1):
        mv, lv = f"mv-{t}", f"lv-{t}"
        nodes.append({"name": mv, "v_min_pu": 0.95, "v_max_pu": 1.06, "load_kw": 60.0, "pv_kw": 40.0})
        nodes.append({"name": lv, "load_kw": round(2.0 * count, 1), "pv_kw": round(1.5 * count, 1)})
        branches.append(
            {
                "name": f"line-{t}",
                "from": previous_mv,
                "to": mv,
                "base_kv": 11.0,
                "r_ohm": 0.12,
                "x_ohm": 0.10,
                "rating": {"amps": 300},
            }
        )
        branches.append(
            {
                "name": f"tx-{t}",
                "kind": "transformer",
                "from": mv,
                "to": lv,
                "base_kv": 0.415,
                "r_ohm": 0.004,
                "x_ohm": 0.015,
                "rating": {"export_kva": round(export_kva_per_site * count, 1), "import_kva": 25.0 * count},
                "tranche_kw": round(tranche_share * DYNAMIC_EXPORT_KW * count, 1),
            }
        )
        previous_mv = mv
        for k in range(1, count + 1):
            index += 1
            pv_kw = float(rng.choice([5.0, 6.6, 8.0, 10.0]))
            load_kw = round(float(rng.uniform(3.0, 6.0)), 1)
            firm = rng.random() < firm_share
            agreement: dict[str, Any] = (
                {"type": "firm"}
                if firm
                else {"type": "dynamic", "export_floor_kw": 1.5, "import_floor_kw": load_kw}
            )
            doc_sites.append(
                {
                    "id": f"house-{t}-{k}",
                    "node": lv,
                    "nmi": f"Q{index:09d}",
                    "max_export_kw": 5.0 if firm else DYNAMIC_EXPORT_KW,
                    "max_import_kw": 15.0,
                    "queue_position": index,
                    "agreement": agreement,
                    "forecast": {"pv_kw": pv_kw, "load_kw": load_kw},
                }
            )
    return {
        "name": name,
        "power_factor": 0.98,
        "timezone": timezone,
        "location": {"latitude_deg": latitude_deg, "longitude_deg": longitude_deg},
        "voltage": {"min_pu": 0.94, "max_pu": 1.10},
        "network": {"nodes": nodes, "branches": branches},
        "sites": doc_sites,
    }
