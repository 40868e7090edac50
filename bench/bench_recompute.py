"""Full recompute-and-publish cycle on a generated feeder: 10,000 sites, 3 constraint levels, 288 intervals.

Builds a zone transformer -> FEEDERS feeders -> DTS distribution transformers each -> sites, stores it
as the active network with every site registered (so every envelope is published), then times
`Recomputer.run_once`: first publication, an unchanged republication, one after a derate, one
unchanged run of a freshly started engine (a restart: nothing cached in the process), and one after
an outage planned 2 h ahead (envelopes computed per stretch of the horizon). Prints compute
and publish seconds, the fallback refresh on its own, and the peak resident memory.

    .venv/bin/python -m bench.bench_recompute [--sites 10000] [--policy pro-rata]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

"envelopes out" is when devices can read the new set; the fallback limits (issue 5) are refreshed
after it, in the same run ("fallback s": that refresh alone; it should be ~0 when nothing the limits
depend on changed, even after a restart). Target (issue 4): full recompute-and-publish <= 5 s, peak
memory <= 2 GiB, on this 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.bench_derc import scratch_database
from bench.seeding import add_feeder_sites
from gridshare.core.clock import FixedClock
from gridshare.core.settings import Settings
from gridshare.recompute.scheduler import Recomputer
from gridshare.server.shared.context import build_context
from gridshare.store.db import transaction
from gridshare.store.models import AssetDerate
from gridshare.store.publication.network_docs import store_network
from gridshare.store.queries.seed import seed_baseline

T0 = 1_782_900_000  # 2026-07-01T10:00Z: midday sun over the generated feeder's longitude


def feeder_document(n_sites: int, feeders: int = 10) -> dict[str, object]:
    dts_per_feeder = max(1, n_sites // feeders // 50)
    sites_per_dt = max(1, n_sites // (feeders * dts_per_feeder))
    nodes: list[dict[str, object]] = [{"name": "grid"}, {"name": "zone-bus"}]
    branches: list[dict[str, object]] = [
        {
            "name": "zone-tx",
            "kind": "transformer",
            "from": "grid",
            "to": "zone-bus",
            "base_kv": 12.47,
            "r_ohm": 0.04,
            "x_ohm": 0.6,
            "rating": "dominion/12-16-20",
            "regulate_pu": 1.01,
        }
    ]
    sites: list[dict[str, object]] = []
    for f in range(feeders):
        head = f"f{f}"
        nodes.append({"name": head, "v_min_pu": 0.95, "v_max_pu": 1.06})
        branches.append(
            {
                "name": f"{head}-cb",
                "from": "zone-bus",
                "to": head,
                "base_kv": 12.47,
                "r_ohm": 0.3,
                "x_ohm": 0.5,
                "rating": "dominion/477-aac",
            }
        )
        for d in range(dts_per_feeder):
            lv = f"{head}-lv{d}"
            nodes.append({"name": lv, "load_kw": 40, "pv_kw": 60})
            branches.append(
                {
                    "name": f"{lv}-dt",
                    "kind": "transformer",
                    "from": head,
                    "to": lv,
                    "base_kv": 0.416,
                    "r_ohm": 0.0035,
                    "x_ohm": 0.0135,
                    "rating": {"kva": 300},
                }
            )
            for k in range(sites_per_dt):
                n = len(sites)
                sites.append(
                    {
                        "id": f"s{n}",
                        "node": lv,
                        "nmi": f"{6_000_000_000 + n}",
                        "max_export_kw": 10,
                        "max_import_kw": 15,
                        "queue_position": n,
                        "agreement": {"type": "dynamic", "export_floor_kw": 1.5},
                        "forecast": {"pv_kw": 8 + (k % 5), "load_kw": 3 + (k % 4)},
                    }
                )
    return {
        "name": f"generated-{len(sites)}",
        "power_factor": 0.95,
        "timezone": "UTC",
        "location": {"latitude_deg": 37.5, "longitude_deg": 0.0},
        "network": {"nodes": nodes, "branches": branches},
        "sites": sites,
    }


def timed_fallback(engine: Recomputer, spent_s: list[float]) -> Recomputer:
    """Record how long each fallback refresh of `engine` takes (appended to `spent_s`)."""
    real: Callable[..., Any] = engine.policy.refresh_fallback

    def refresh(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent_s.append(time.perf_counter() - t)

    engine.policy.refresh_fallback = refresh  # type: ignore[method-assign]
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description="recompute-and-publish cycle timing")
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--policy", default="pro-rata")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.database_url) as url:
        settings = Settings(data_dir=Path(tmp), database_url=url, allocation_policy=args.policy)
        ctx = build_context(settings, FixedClock(T0))
        seed_baseline(ctx)
        with console.status(f"generating and storing a {args.sites}-site feeder"):
            doc = feeder_document(args.sites)
            with transaction(ctx.sessions) as session:
                store_network(session, doc, "bench", T0)
            with transaction(ctx.sessions) as session:
                add_feeder_sites(session, doc["sites"], T0)
        spent_s: list[float] = []
        engine = timed_fallback(Recomputer(ctx), spent_s)
        table = Table(
            title=f"{len(doc['sites'])} sites, {len(doc['network']['branches'])} thermal constraints "
            f"(+ voltage), 288 x 5 min, {args.policy}, {url.split(':', 1)[0]}"
        )
        columns = ("run", "compute s", "publish s", "envelopes out s", "fallback s", "run s", "blocks", "new")
        for col in columns:
            table.add_column(col, justify="right")
        steps = [
            ("first publication", None),
            ("unchanged republication", None),
            ("after a derate", "f0-lv0-dt"),
            ("restarted, unchanged", "restart"),
            ("outage planned 2 h ahead", "f1-lv0-dt"),
        ]
        for label, derate in steps:
            if derate == "restart":
                # a new process: the old one's publisher lock goes with it, nothing else is kept
                engine.stop()
                engine, derate = timed_fallback(Recomputer(ctx), spent_s), None
            if derate:
                planned = label.startswith("outage")  # 2 h to 3 h ahead: three stretches of the horizon
                with transaction(ctx.sessions) as session:
                    session.add(
                        AssetDerate(
                            asset=derate,
                            factor=0.0 if planned else 0.3,
                            reason="bench",
                            from_s=T0 + 7200 if planned else 0,
                            until_s=T0 + 10800 if planned else None,
                            created_s=T0,
                            created_by="bench",
                        )
                    )
            spent_s.clear()
            t = time.perf_counter()
            out = engine.run_once(label)
            total = time.perf_counter() - t
            if out.status != "published":
                raise SystemExit(f"{label}: {out.status} {out.detail}")
            s = out.summary
            table.add_row(
                label,
                f"{out.compute_s:.2f}",
                f"{out.publish_s:.2f}",
                f"{out.compute_s + out.publish_s:.2f}",
                f"{sum(spent_s):.2f}",
                f"{total:.2f}",
                str(s.blocks),
                str(s.blocks_new),
            )
        console.print(table)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        console.print(f"peak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
