"""`gridshare serve` as real processes that can be killed: for the crash tests and the chaos benchmark.

Each instance is its own OS process with its own device and operator ports, on a shared data
directory (dev PKI, demo feeder) and a shared store, exactly as an operator would run two servers
for availability. Devices reach them over mutual TLS with the dev PKI's certificates; the operator
API is reached with a bearer token written straight into the store.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from lxml import etree

from gridshare.certs.devpki import DevPki, create_dev_pki, load_dev_pki
from gridshare.store.access_models import ApiRole
from gridshare.store.db import make_engine, session_factory, transaction
from gridshare.store.models import PublisherLease

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_pki(data_dir: Path, devices: int = 3) -> DevPki:
    """The dev PKI every instance on `data_dir` will load (made before any starts, so none races)."""
    directory = data_dir / "pki"
    if (directory / "clients.json").exists():
        return load_dev_pki(directory)
    return create_dev_pki(directory, devices=devices, aggregators=1)


@dataclass
class ServeProcess:
    """One `gridshare serve` instance; `start` again after `kill` to restart it with the same ports."""

    name: str
    data_dir: Path
    database_url: str
    settings_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    operator_port: int = field(default_factory=free_port)
    verbose: bool = False  # `gridshare -v`: the engine's DEBUG lines (when a run starts, publishes)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None
    _log_from: int = 0  # where this start's lines begin in the log file

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def operator_url(self) -> str:
        return f"http://127.0.0.1:{self.operator_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHARE_")}
        env.update(
            {
                "GRIDSHARE_DATA_DIR": str(self.data_dir),
                "GRIDSHARE_DATABASE_URL": self.database_url,
                "GRIDSHARE_OPERATOR_PORT": str(self.operator_port),
                **self.settings_env,
            }
        )
        exe = Path(sys.executable).with_name("gridshare")
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115  (appended to across restarts)
        self._log.write(f"--- start {self.starts + 1} at {time.strftime('%H:%M:%S')} ---\n".encode())
        self._log.flush()
        self._log_from = self._log.tell()
        self.proc = subprocess.Popen(
            [str(exe), *(["-v"] if self.verbose else []), "serve", "--port", str(self.port)],
            cwd=self.data_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1

    def log_lines(self) -> list[str]:
        """What this start of the process has logged so far."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_from)
            return fh.read().decode(errors="replace").splitlines()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (SIGKILL: no clean-up of any kind) and reap the process."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        if self._log is not None:
            self._log.close()
            self._log = None

    def wait_ready(self, tls: ssl.SSLContext, timeout_s: float = 60.0) -> float:
        """Until the device port answers /dcap; returns the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}")
            try:
                if httpx.get(f"{self.base_url}/dcap", verify=tls, timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout_s:.0f} s; see {self.log_path}")


def device_tls(pki: DevPki, name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    cert = pki.client(name)
    ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    return ctx


def operator_token(database_url: str, name: str = "crash-test") -> str:
    """A fresh operator-role bearer token, written into the store (the CLI does the same)."""
    from gridshare.server.operator.auth import new_token, token_digest
    from gridshare.store.queries.access import add_token

    token = new_token()
    engine = make_engine(database_url)
    try:
        with transaction(session_factory(engine)) as session:
            add_token(
                session,
                name=f"{name}-{token[:6]}",
                role=ApiRole.operator,
                token_sha256=token_digest(token),
                now_s=int(time.time()),
            )
    finally:
        engine.dispose()
    return token


def publisher_holder(database_url: str) -> tuple[str, int]:
    """(holder, epoch) of the publisher lease row: who publishes now, and how many holders there were."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            row = session.get(PublisherLease, 1)
            return (row.holder, int(row.epoch)) if row is not None else ("", 0)
    finally:
        engine.dispose()


def _watts(el: etree._Element | None) -> float | None:
    if el is None:
        return None
    value = el.findtext("s:value", namespaces=NS)
    multiplier = el.findtext("s:multiplier", namespaces=NS)
    return int(value or 0) * 10.0 ** int(multiplier or 0)


class Device:
    """A device polling its own DERControlList over mutual TLS, as an inverter does."""

    def __init__(self, pki: DevPki, name: str) -> None:
        self.name = name
        self.tls = device_tls(pki, name)
        self._derc: dict[str, str] = {}  # base url -> DERControlList path

    def _path(self, client: httpx.Client, base_url: str) -> str:
        if base_url not in self._derc:
            edev = etree.fromstring(client.get("/edev").content)[0].get("href")
            self._derc[base_url] = f"{edev}/derp/1/derc"
        return self._derc[base_url]

    def active_limits_w(
        self, base_url: str, timeout_s: float = 5.0
    ) -> list[tuple[float | None, float | None]]:
        """(export W, import W) of every control in force now (EventStatus active)."""
        with httpx.Client(base_url=base_url, verify=self.tls, timeout=timeout_s) as client:
            response = client.get(self._path(client, base_url), params={"l": 100})
            response.raise_for_status()
            root = etree.fromstring(response.content)
        out = []
        for control in root:
            if control.findtext("s:EventStatus/s:currentStatus", namespaces=NS) != "1":
                continue
            base = control.find("s:DERControlBase", NS)
            out.append((_watts(base.find("c:opModExpLimW", NS)), _watts(base.find("c:opModImpLimW", NS))))
        return out

    def applied_limits_w(
        self, base_url: str, timeout_s: float = 5.0
    ) -> tuple[float | None, float | None, str]:
        """(export W, import W, "control" | "default"): what the device applies now.

        The controls in force (the largest of each limit if several are, to be conservative), or its
        DefaultDERControl when none is.
        """
        active = self.active_limits_w(base_url, timeout_s)
        if active:
            exports = [e for e, _ in active if e is not None]
            imports = [i for _, i in active if i is not None]
            return (max(exports) if exports else None, max(imports) if imports else None, "control")
        with httpx.Client(base_url=base_url, verify=self.tls, timeout=timeout_s) as client:
            path = self._path(client, base_url).removesuffix("/derc") + "/dderc"
            response = client.get(path)
            response.raise_for_status()
            base = etree.fromstring(response.content).find("s:DERControlBase", NS)
        return (_watts(base.find("c:opModExpLimW", NS)), _watts(base.find("c:opModImpLimW", NS)), "default")
