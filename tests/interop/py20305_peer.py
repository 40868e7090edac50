"""py20305, an independent IEEE 2030.5 / CSIP-AUS DER client (PyPI), as a real peer of a running GridShare.

Run by tests/interop/run.sh with the Python of its own virtual environment; it imports nothing from
GridShare. py20305 (Project Satori: SunSpec Alliance, DER Security) does what an inverter gateway does:
discovers DeviceCapability -> Time -> SelfDevice -> EndDeviceList -> DERs -> FunctionSetAssignments ->
DERPrograms -> DefaultDERControl and DERControls, and registers in band when the server does not know it
yet. As a device and as an aggregator. Each check prints PASS or FAIL; the last line is `N passed, M failed`.

    python py20305_peer.py HOST PORT PKI_DIR
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from py20305.client.csip_client import CsipClient
from py20305.client.tls import TlsConfig
from py20305.models.csipaus.elements import doe_limits

LFDI_HEX = 40


def lfdi_of(pem_path: Path) -> str:
    leaf = pem_path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf)).hexdigest()[:LFDI_HEX].upper()


class Checks:
    def __init__(self) -> None:
        self.passed = self.failed = 0

    async def run(self, name: str, check: Callable[[], Awaitable[None]]) -> bool:
        started = time.monotonic()
        try:
            await check()
        except Exception as exc:
            self.failed += 1
            print(f"FAIL  {name}: {''.join(traceback.format_exception_only(exc)).strip()}", flush=True)
            return False
        self.passed += 1
        print(f"PASS  {name} ({time.monotonic() - started:.2f} s)", flush=True)
        return True


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _hex(value: Any) -> str:
    return value.hex().upper() if isinstance(value, bytes) else str(value).upper()


async def as_client(
    checks: Checks, label: str, base: str, pki: Path, client: dict[str, str], edev_lfdi: str, server_lfdi: str
) -> None:
    tls = TlsConfig(client_cert=Path(client["cert"]), client_key=Path(client["key"]), ca_cert=pki / "ca.pem")
    csip = CsipClient(base, tls=tls, heartbeat_enabled=False, reconcile_enabled=False)
    try:

        async def discover_and_register() -> None:
            await csip.connect()
            known = {_hex(e.lfdi) for e in csip.state.end_devices.values()}
            if edev_lfdi not in known:
                location = await csip.register_end_device(lfdi=edev_lfdi)
                expect(
                    bool(location) and location.startswith("/edev/"), f"registration answered {location!r}"
                )
                await csip.connect()  # discover again, now registered
            known = {_hex(e.lfdi) for e in csip.state.end_devices.values()}
            expect(edev_lfdi in known, f"its EndDevice is not in the EndDeviceList: {sorted(known)}")

        if not await checks.run(f"{label}: discovers, registers in band, rediscovers", discover_and_register):
            return
        state = csip.state

        async def self_device() -> None:
            expect(state.self_device is not None, "no SelfDevice discovered")
            sdev = state.self_device.device  # type: ignore[union-attr]
            expect(_hex(sdev.l_fdi) == server_lfdi, f"SelfDevice lFDI {_hex(sdev.l_fdi)}")

        await checks.run(f"{label}: SelfDevice is the server's own (its TLS certificate)", self_device)

        async def programs() -> None:
            expect(state.csip_aus_mode, "CSIP-AUS not detected")
            expect(bool(state.der_programs), "no DERProgram discovered")
            defaults = [p.default_dercontrol for p in state.der_programs.values() if p.default_dercontrol]
            expect(bool(defaults), "no DefaultDERControl")
            limits = doe_limits(defaults[0].dercontrol_base)
            expect("opModExpLimW" in limits, f"the DefaultDERControl carries no export limit: {limits}")

        await checks.run(f"{label}: DERPrograms with a DefaultDERControl export limit (CSIP-AUS)", programs)
    finally:
        await csip.shutdown()


async def main(host: str, port: int, pki: Path) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # its own log lines are not this report
    index = json.loads((pki / "clients.json").read_text())
    clients = {c["name"]: c for c in index["clients"]}
    # the last device: the others are aio2030dot5's, so this one is still unknown and registers in band
    device = [c for c in clients.values() if c["kind"] == "device"][-1]
    aggregator = next(c for c in clients.values() if c["kind"] == "aggregator")
    server_lfdi = lfdi_of(Path(index.get("server_cert") or pki / "server.pem"))
    base = f"https://{host}:{port}"
    checks = Checks()
    print(f"GridShare at {base}, server lFDI {server_lfdi}", flush=True)
    await as_client(checks, "device", base, pki, device, device["lfdi"], server_lfdi)
    site_lfdi = hashlib.sha256(b"py20305 aggregator site").hexdigest()[:LFDI_HEX].upper()
    await as_client(checks, "aggregator", base, pki, aggregator, site_lfdi, server_lfdi)
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))))
