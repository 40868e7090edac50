"""Random radial networks and sites for the property tests (hypothesis), drawn one way for every suite.

The engine's safety tests and the fallback's draw from the same family, so a shape one of them
exercises (a voltage-limited spur, an unrated branch, a regulator) is one the other could meet too.
Options switch on what only one suite needs: customers who are not sites and regulators (fallback,
which plans without forecasts) and firm sites and import floors.
"""

from __future__ import annotations

from hypothesis import strategies as st

from gridshare.envelopes.forecast import LOAD_SHAPES
from gridshare.grid.agreements import Agreement, Dynamic, Firm, Limited
from gridshare.grid.network import Branch, Network, Node, Rating, Site
from gridshare.grid.units import W_PER_KW as KW  # figures are drawn in kW and scaled to the model's W

#: A low-voltage and a medium-voltage level, so per-unit impedances span both.
KVS = (0.416, 12.47)
PROFILES = tuple(LOAD_SHAPES)


@st.composite
def radial_networks(
    draw: st.DrawFn, node_customers: bool = False, regulators: bool = False, max_nodes: int = 7
) -> Network:
    """A tree of 2..max_nodes nodes under n0, with random impedances, ratings and voltage bounds.

    `node_customers` gives each node a background load and PV (the customers who are not sites);
    `regulators` makes about one branch in four hold its far node at 1.01 pu.
    """
    n_nodes = draw(st.integers(2, max_nodes))
    nodes = [Node("n0", v_min_pu=None, v_max_pu=None)]
    branches = []
    for i in range(1, n_nodes):
        parent = draw(st.integers(0, i - 1))
        kv = draw(st.sampled_from(KVS))
        rating = (
            Rating(draw(st.floats(50, 5_000)) * KW, draw(st.floats(50, 5_000)) * KW)
            if draw(st.booleans())
            else None
        )
        customers = (
            {
                "load_w": draw(st.floats(0, 800)) * KW,
                "pv_w": draw(st.floats(0, 800)) * KW,
                "load_profile": draw(st.sampled_from(PROFILES)),
            }
            if node_customers
            else {}
        )
        nodes.append(
            Node(
                f"n{i}",
                v_min_pu=draw(st.floats(0.90, 0.96)),
                v_max_pu=draw(st.floats(1.04, 1.10)),
                **customers,
            )
        )
        regulate = draw(st.sampled_from((None, None, None, 1.01))) if regulators else None
        branches.append(
            Branch(
                f"b{i}",
                f"n{parent}",
                f"n{i}",
                r_ohm=draw(st.floats(0.0, 0.02)) * kv**2,
                x_ohm=draw(st.floats(0.0, 0.04)) * kv**2,
                base_kv=kv,
                rating=rating,
                regulate_pu=regulate,
            )
        )
    return Network(tuple(nodes), tuple(branches), power_factor=draw(st.floats(0.8, 1.0)))


@st.composite
def site_lists(
    draw: st.DrawFn,
    network: Network,
    firm: bool = False,
    floor_share: float = 0.05,
    import_floors: bool = False,
    own_customers: bool = False,
) -> list[Site]:
    """1..6 sites on random non-root nodes: mostly dynamic, some limited (and firm, with `firm`).

    Dynamic floors are up to `floor_share` of the site's rating; `own_customers` gives each site its
    own PV and load (what the fallback's worst case counts behind the meter).
    """
    n_nodes = len(network.nodes)
    sites = []
    for j in range(draw(st.integers(1, 6))):
        node = f"n{draw(st.integers(1, n_nodes - 1))}"
        max_export, max_import = draw(st.floats(1, 2_000)) * KW, draw(st.floats(1, 2_000)) * KW
        kind = draw(st.integers(0, 5 if firm else 4))
        agreement: Agreement
        if kind == 0:
            agreement = Limited(export_w=draw(st.floats(0, 50)) * KW, import_w=draw(st.floats(0, 50)) * KW)
        elif firm and kind == 1:
            agreement = Firm()
        elif import_floors:
            agreement = Dynamic(
                export_floor_w=draw(st.floats(0, floor_share)) * max_export,
                import_floor_w=draw(st.floats(0, floor_share)) * max_import,
            )
        else:
            agreement = Dynamic(export_floor_w=draw(st.floats(0, floor_share)) * max_export)
        extra = (
            {"pv_w": draw(st.floats(0, 50)) * KW, "load_w": draw(st.floats(0, 50)) * KW}
            if own_customers
            else {}
        )
        sites.append(
            Site(
                f"s{j}",
                node,
                agreement,
                max_export,
                max_import,
                queue_position=draw(st.integers(0, 9)),
                **extra,
            )
        )
    return sites
