"""CPU time of a server process and its children, read from /proc (Linux).

Benchmarks charge the server only for what it spent, not the load generator sharing the machine.
"""

from __future__ import annotations

import os
from pathlib import Path


def tree_pids(pid: int) -> list[int]:
    """`pid` and its live descendants (a process that exits meanwhile is skipped)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants, from /proc."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total
