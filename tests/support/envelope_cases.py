"""Networks, forecasts and the safety check shared by the envelope property suites."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gridshare.envelopes.compute import EnvelopeSet
from gridshare.envelopes.forecast import Forecast, ProfileSpec, profile_forecast
from gridshare.grid.examples import demo_feeder_path
from gridshare.grid.network import Network, Site
from tests.support.strategies import radial_networks, site_lists
from tests.support.tree_walk import walk

DEMO = demo_feeder_path()


def violations(network: Network, sites: list[Site], es: EnvelopeSet, fc: Forecast) -> list[str]:
    """Every (direction, interval, constraint) the allocated limits overload, except reported ones."""
    epochs = np.array([int(t.timestamp()) for t in es.interval_starts])
    node_ids = [f"node:{n.name}" for n in network.nodes]
    load, gen = fc.on_grid(epochs, node_ids)
    reported = {(i.direction, int(i.interval_start.timestamp()), i.constraint) for i in es.infeasibilities}
    regulated = {b.to_node for b in network.branches if b.regulate_pu is not None}
    root = next(n.name for n in network.nodes if n.name not in {b.to_node for b in network.branches})
    found: list[str] = []
    for t, epoch in enumerate(epochs):
        for direction, limits, sign in (
            ("export", es.export_limit_w, 1.0),
            ("import", es.import_limit_w, -1.0),
        ):
            inj = {n.name: float(gen[t, i] - load[t, i]) for i, n in enumerate(network.nodes)}
            for s, site in enumerate(sites):
                inj[site.node] += sign * float(limits[t, s])
            flows, volts = walk(network, inj)
            for b in network.branches:
                rating = None if b.rating is None else getattr(b.rating, f"{direction}_w")
                name = f"thermal:{b.name}"
                if rating is None or (direction, epoch, name) in reported:
                    continue
                flow = sign * flows[b.name]
                if flow > rating * (1 + RTOL) + 1e-6:
                    found.append(f"{direction} t={t} {name}: {flow:.1f} W > {rating:.1f} W")
            for n in network.nodes:
                name = f"voltage:{n.name}"
                if n.name in (root, *regulated) or (direction, epoch, name) in reported:
                    continue
                v = volts[n.name]
                if direction == "export" and n.v_max_pu is not None and v > n.v_max_pu + 1e-9:
                    found.append(f"export t={t} {name}: {v:.6f} > {n.v_max_pu}")
                if direction == "import" and n.v_min_pu is not None and v < n.v_min_pu - 1e-9:
                    found.append(f"import t={t} {name}: {v:.6f} < {n.v_min_pu}")
    return found


def demo_profile_forecast(network: Network, sites: list[Site], start: datetime, n: int) -> Forecast:
    specs = {s.id: ProfileSpec(s.pv_w, s.load_w, s.load_profile) for s in sites}
    specs |= {
        f"node:{node.name}": ProfileSpec(node.pv_w, node.load_w, node.load_profile) for node in network.nodes
    }
    return profile_forecast(
        specs,
        start,
        300,
        n,
        tz=network.timezone,
        latitude_deg=network.latitude_deg,
        longitude_deg=network.longitude_deg,
        issued_at=start,
    )


@st.composite
def radial_cases(draw: st.DrawFn) -> tuple[Network, list[Site], Forecast]:
    network = draw(radial_networks())
    sites = draw(site_lists(network))
    nodes, n_nodes = network.nodes, len(network.nodes)
    n_int = 2
    ids = tuple(f"node:{n.name}" for n in nodes)
    load_w = np.array(
        draw(st.lists(st.floats(0, 400_000), min_size=n_int * n_nodes, max_size=n_int * n_nodes))
    )
    gen_w = np.array(
        draw(st.lists(st.floats(0, 400_000), min_size=n_int * n_nodes, max_size=n_int * n_nodes))
    )
    fc = Forecast(START, START, 300, ids, load_w.reshape(n_int, n_nodes), gen_w.reshape(n_int, n_nodes))
    return network, sites, fc


START = datetime(2026, 3, 1, 12, tzinfo=UTC)


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


RTOL = 1e-6
