"""An independent check for tests: flows and linearised voltages on a radial network, by walking the tree.

Written apart from envelopes/ (no sensitivity matrices) so that tests of the engine and of the
fallback limits compare them with a second, simpler computation.
"""

from __future__ import annotations

import math

from gridshare.grid.network import Branch, Network


def walk(network: Network, injection_w: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Reverse flow per branch (W) and voltage per node (pu) for net injections per node."""
    children: dict[str, list[Branch]] = {}
    fed = {b.to_node for b in network.branches}
    for b in network.branches:
        children.setdefault(b.from_node, []).append(b)
    root = next(n.name for n in network.nodes if n.name not in fed)
    tan_phi = math.tan(math.acos(network.power_factor))
    flows: dict[str, float] = {}

    def subtree(node: str) -> float:
        total = injection_w.get(node, 0.0)
        for b in children.get(node, []):
            flows[b.name] = subtree(b.to_node)
            total += flows[b.name]
        return total

    subtree(root)
    volts = {root: network.source_voltage_pu}
    stack = [root]
    while stack:
        node = stack.pop()
        for b in children.get(node, []):
            if b.regulate_pu is not None:
                volts[b.to_node] = b.regulate_pu
            else:
                rise = (b.r_ohm + b.x_ohm * tan_phi) / (b.base_kv * 1000.0) ** 2 * flows[b.name]
                volts[b.to_node] = volts[node] + rise
            stack.append(b.to_node)
    return flows, volts
