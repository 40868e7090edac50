"""py-spy recordings of a server's processes over one measured window, for the benches' `--profile`.

A profile says where a phase's CPU goes; the benches print only totals. One raw (collapsed-stack) file
per process, so a worker's profile is not mixed with its supervisor's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from bench.proc_cpu import tree_pids


class Spies:
    """py-spy attached to `pid` and its Python descendants between `start()` and `stop()`."""

    def __init__(self, pid: int, out_dir: Path, label: str) -> None:
        self.pid, self.out_dir, self.label = pid, out_dir, label
        self._spies: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for p in tree_pids(self.pid):
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
            if b"python" not in cmdline and b"gridshare" not in cmdline:
                continue
            out = self.out_dir / f"{self.label}-{p}.txt"
            self._spies.append(
                subprocess.Popen(
                    [spy, "record", "-p", str(p), "-f", "raw", "-r", "200", "-o", str(out), "--nonblocking"]
                    # only samples holding the GIL: where the interpreter's time goes, not its waits
                    + (["--gil"] if os.environ.get("GRIDSHARE_BENCH_PROFILE_GIL") else []),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for spy in self._spies:
            spy.send_signal(signal.SIGINT)
        for spy in self._spies:
            spy.wait(timeout=60)
        self._spies = []
