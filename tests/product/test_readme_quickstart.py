"""The README's quick start, run as written against a freshly started server, so it cannot drift.

Every indented command block of the README's "Quick start" section runs, in order, in one bash
session in an empty folder where `gridshare serve` (what `./scripts/serve.sh` runs) has been started
on embedded defaults; only the blocks that start the server or run the test suite are left out. The
only changes to the text: the two ports become free ones and `.venv/bin/gridshare` the test
environment's. A `sleep` in the README (each follows an operator change) is followed by a wait for
the engine's publication for that change, so a slow machine does not fail the walk-through. What a
user would see is then checked: device-1's export limit drops under the derate and comes back when
it ends.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
GRIDSHARE = Path(sys.executable).with_name("gridshare")
#: Blocks of the quick start that are not part of the walk-through, by their first command.
NOT_RUN = ("./scripts/serve.sh", "./scripts/test.sh")
LIMIT = re.compile(
    r"<csipaus:opModExpLimW><multiplier>(-?\d+)</multiplier><value>(-?\d+)</value></csipaus:opModExpLimW>"
)


def quick_start_blocks(readme: str) -> list[str]:
    """The indented code blocks of the `## Quick start` section, in order."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = []
    current: list[str] = []
    for line in [*section.splitlines(), ""]:
        if line.startswith("    "):
            current.append(line[4:])
        elif current:
            blocks.append("\n".join(current))
            current = []
    return blocks


def test_the_quick_start_blocks_are_found() -> None:
    blocks = quick_start_blocks((ROOT / "README.md").read_text())
    firsts = [b.splitlines()[0] for b in blocks]
    assert firsts[:2] == list(NOT_RUN), firsts
    assert len(blocks) >= 4, "the walk-through blocks"


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """`gridshare serve` on embedded defaults in an empty folder (as ./scripts/serve.sh runs it)."""
    dev_port, op_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
    env |= {"GRIDSHARE_PORT": str(dev_port), "GRIDSHARE_OPERATOR_PORT": str(op_port)}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(GRIDSHARE), "serve"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_a_device_has_an_envelope(tmp_path, dev_port, proc, log)
        yield dev_port, op_port, tmp_path
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def _wait_until_a_device_has_an_envelope(
    folder: Path, port: int, proc: subprocess.Popen[bytes], log: Path
) -> None:
    index = folder / "gridshare-data" / "pki" / "clients.json"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        time.sleep(0.3)
        assert proc.poll() is None, log.read_text()
        if not index.exists():
            continue
        try:
            pki = json.loads(index.read_text())
            device = next(c for c in pki["clients"] if c["name"] == "device-1")
            tls = ssl.create_default_context(cafile=pki["ca"])
            tls.load_cert_chain(device["cert"], device["key"])
            r = httpx.get(f"https://127.0.0.1:{port}/edev/1/derp/1/derc", verify=tls, timeout=5)
        except (httpx.TransportError, json.JSONDecodeError, OSError):
            continue
        if r.status_code == 200 and int(etree.fromstring(r.content).get("all", "0")) > 0:
            return
    raise AssertionError(f"no envelope for device-1 within 90 s:\n{log.read_text()}")


def _script(blocks: list[str], dev_port: int, op_port: int, viewer_token: str) -> str:
    """The walk-through as one bash script; `sleep` also waits for the engine's next publication."""
    preamble = f"""
set -euo pipefail
QS_TOKEN={viewer_token}
# the newest recomputation made for an operator change (a scheduled one may have read the old inputs)
NEWEST='import json, sys
items = [i for i in json.load(sys.stdin)["items"] if i["reason"] == "constraint changed"]
print(items[0]["created_s"] if items and items[0]["status"] == "published" else 0)'
sleep() {{
  local since=$(( $(date +%s) - 1 ))
  command sleep "$@"
  for _ in $(command seq 1 120); do
    newest=$(curl -s -H "Authorization: Bearer $QS_TOKEN" "http://127.0.0.1:{op_port}/envelopes" \\
      | {sys.executable} -c "$NEWEST")
    [ "$newest" -ge "$since" ] && return 0
    command sleep 0.5
  done
  echo "no publication after the change" >&2
  return 1
}}
"""
    body = "\n\n".join(b for b in blocks if b.splitlines()[0] not in NOT_RUN)
    body = body.replace("127.0.0.1:8443", f"127.0.0.1:{dev_port}").replace(
        "127.0.0.1:8080", f"127.0.0.1:{op_port}"
    )
    body = body.replace(".venv/bin/gridshare", str(GRIDSHARE))
    return preamble + body + "\n"


def _limits_w(output: str) -> list[float]:
    return [int(value) * 10 ** int(mult) for mult, value in LIMIT.findall(output)]


def test_the_quick_start_shows_a_derate_reaching_device_1(fresh_server: tuple[int, int, Path]) -> None:
    dev_port, op_port, folder = fresh_server
    viewer = subprocess.run(
        [str(GRIDSHARE), "admin", "token", "create", "--role", "viewer", "--name", "quick-start-test"],
        cwd=folder,
        env={k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert viewer.returncode == 0, viewer.stderr
    blocks = quick_start_blocks((ROOT / "README.md").read_text())
    script = _script(blocks, dev_port, op_port, viewer.stdout.strip())
    result = subprocess.run(["bash", "-c", script], cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "<DeviceCapability" in out  # /dcap answered device-1
    assert '"name":"demo-feeder"' in out  # GET /network
    assert '"asset":"f2-cd","factor":0.25' in out and '"id":1' in out  # the derate was taken, as id 1
    # the envelope, then the export limit before, under and after the derate (the limit lines)
    before, derated, restored = _limits_w(out)[-3:]
    assert derated < before, (before, derated)
    # f2-cd: 300 A at 12.47 kV, about 6.5 MVA; a quarter of it, plus what the loads behind the line
    # take first (f2-d and lv-23 240 kW, the sites there 63 kW, all at peak), is all the site may export
    assert derated <= 0.25 * 3**0.5 * 12.47e3 * 300 + 303e3, derated
    assert restored > derated, (derated, restored)
