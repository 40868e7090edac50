"""How long deriving DERControl event status takes as a site's list grows (server/shared/control_status.py).

Every uncached DERControlList and DERProgramList derives the status of each live control; with
envelopes republished every few minutes a site can hold many superseded versions of each block.
A day of 5-minute blocks republished `--versions` times is timed at a few sizes, best of `--repeat`.

    .venv/bin/python -m bench.bench_control_status [--versions 1 4 24] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from gridshare.server.shared.control_status import derive_states

BLOCKS_PER_DAY = 288
BLOCK_S = 300


@dataclass(eq=False)
class Block:
    id: str
    mrid: str
    program_id: int
    site_id: int
    creation_s: int
    start_s: int
    duration_s: int
    cancelled_s: int | None = None
    cancel_randomized: bool = False


def day(versions: int) -> list[Block]:
    """Each version re-issues every block of the day a minute after the previous version."""
    return [
        Block(f"{v:02d}{b:04d}", f"{v:02d}{b:04d}", 1, 1, v * 60, b * BLOCK_S, BLOCK_S)
        for v in range(versions)
        for b in range(BLOCKS_PER_DAY)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", type=int, nargs="+", default=[1, 4, 24])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    table = Table(title="derive_states: one site, one program, a day of 5-minute blocks")
    for col in ("versions", "controls", "best ms", "us per control"):
        table.add_column(col, justify="right")
    for versions in args.versions:
        blocks = day(versions)
        best_s = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            derive_states(blocks, now_s=-1)
            best_s = min(best_s, time.perf_counter() - t0)
        table.add_row(
            str(versions), str(len(blocks)), f"{best_s * 1e3:.1f}", f"{best_s * 1e6 / len(blocks):.1f}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
