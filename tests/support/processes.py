"""Real processes for the deployment tests: `gridshare serve` with roles, and nginx; stopped by PID.

Each process writes its output to a log file under the test's directory; a wait that times out, or a
process that dies while we wait for it, fails the test with the tail of every log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GRIDSHARE = Path(sys.executable).with_name("gridshare")
RENDER_NGINX = REPO / "deploy" / "nginx" / "render.py"
#: Start-up of a `gridshare serve` process on a busy 2-core machine can take 20 s (imports, schema).
START_TIMEOUT_S = 120.0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (pid {self.pid}, {self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM by PID, then SIGKILL if it does not go."""
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def clean_env(**gridshare: str) -> dict[str, str]:
    """This environment without any GRIDSHARE_* variable of the caller's, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
    env.update({f"GRIDSHARE_{k.upper()}": v for k, v in gridshare.items()})
    return env


def start(name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    return Proc(name, popen, log)


def start_gridshare(name: str, roles: str, env: dict[str, str], log_dir: Path, cwd: Path) -> Proc:
    return start(name, [str(GRIDSHARE), "serve", "--roles", roles], env, log_dir, cwd)


def wait_until(
    check: Callable[[], bool], what: str, procs: list[Proc], timeout_s: float = START_TIMEOUT_S
) -> None:
    """Poll `check` until it is true; fail with every log's tail on timeout or if a process exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except Exception:  # not up yet (connection refused, TLS reset ...)
            pass
        dead = [p for p in procs if not p.alive()]
        if dead or time.monotonic() > deadline:
            reason = f"{', '.join(p.name for p in dead)} exited" if dead else f"{timeout_s:.0f} s passed"
            pytest.fail(f"waiting for {what}: {reason}\n" + "\n".join(p.tail() for p in procs))
        time.sleep(0.2)


def nginx_binary() -> str:
    """Debian's nginx (.ci/run installs it); skipped when absent, a failure under CI."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; .ci/run should have installed Debian's nginx")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return found


def nginx_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip()


def render_nginx(out: Path, *args: str) -> None:
    """deploy/nginx/render.py, as an operator runs it; fails the test with its message."""
    done = subprocess.run(
        [sys.executable, str(RENDER_NGINX), "--out", str(out), "--standalone", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def start_nginx(binary: str, conf_dir: Path, log_dir: Path) -> Proc:
    """nginx in the foreground with its own prefix (no root paths), checked with -t first."""
    argv = [
        binary,
        "-p",
        str(conf_dir),
        "-c",
        str(conf_dir / "nginx.conf"),
        "-e",
        str(conf_dir / "logs/error.log"),
    ]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    return start("nginx", argv, os.environ.copy(), log_dir, conf_dir)
