"""aio2030dot5, an independent IEEE 2030.5 client (PyPI), as a real peer of a running GridShare.

Run by tests/interop/run.sh with the Python of its own virtual environment (aio2030dot5 needs 3.12+);
it imports nothing from GridShare. A device and an aggregator first mirror meter data the way a CSIP-AUS
client does (a plain HTTPS client from the standard library: aio2030dot5 only reads), then aio2030dot5
does what it was written to do against a meter: probe the TLS identity, discover
DeviceCapability -> SelfDevice -> DeviceInformation -> UsagePointList -> MeterReadings -> ReadingTypes,
read the latest values, the clock and the interval data, over mutual TLS with the server's CSIP-AUS
cipher (ECDHE-ECDSA-AES128-CCM8). Each check prints PASS or FAIL; the last line is `N passed, M failed`.

    python aio2030dot5_peer.py HOST PORT PKI_DIR
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import ssl
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aio2030dot5 import Meter, MeterProtocolError, Timeouts

SEP = 'xmlns="urn:ieee:std:2030.5:ns"'
#: IEEE 2030.5 §6.3.3: the lFDI is the first 160 bits of SHA-256 over the certificate's DER encoding.
LFDI_HEX = 40
#: A CSIP-AUS site meter: signed instantaneous power (W), an import register (Wh x 10^-1) and 5-minute
#: export intervals (Wh). (name, uom, accumulationBehaviour, flowDirection, powerOfTenMultiplier, interval)
CHANNELS = (
    ("power", 38, 12, 1, 0, None),
    ("energy_summation_delivered", 72, 9, 1, -1, None),
    ("energy_interval_received", 72, 4, 19, 0, 300),
)


def lfdi_of(pem_path: Path) -> str:
    leaf = pem_path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    der = ssl.PEM_cert_to_DER_cert(leaf)
    return hashlib.sha256(der).hexdigest()[:LFDI_HEX].upper()


def sfdi_of(lfdi: str) -> int:
    head = int(lfdi[:9], 16)
    return head * 10 + (10 - sum(int(d) for d in str(head)) % 10) % 10


class Plain:
    """What a device's own firmware would do to register and mirror: HTTPS with its certificate."""

    def __init__(self, host: str, port: int, ca: Path, cert: Path, key: Path) -> None:
        self.host, self.port = host, port
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.ctx.load_cert_chain(str(cert), str(key))

    def post(self, path: str, body: str) -> tuple[int, str]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=20)
        try:
            conn.request("POST", path, body.encode(), {"Content-Type": "application/sep+xml"})
            answer = conn.getresponse()
            text = answer.read().decode(errors="replace")
            if answer.status >= 300:
                raise RuntimeError(f"POST {path}: HTTP {answer.status} {text[:200]}")
            return answer.status, answer.getheader("Location") or ""
        finally:
            conn.close()


def end_device_body(lfdi: str) -> str:
    return (
        f"<EndDevice {SEP}><deviceCategory>00</deviceCategory><lFDI>{lfdi}</lFDI><sFDI>{sfdi_of(lfdi)}</sFDI>"
        f"<changedTime>{int(time.time())}</changedTime></EndDevice>"
    )


def mirror_body(lfdi: str, tag: str, now_s: int) -> tuple[str, dict[str, list[tuple[int, int]]]]:
    """A MirrorUsagePoint with its three MirrorMeterReadings and the readings it carries."""
    slot = now_s - now_s % 300
    readings = {
        "power": [(slot - 300, 800), (slot, -1500)],  # signed: exporting 1.5 kW now
        "energy_summation_delivered": [(slot, 123456)],  # 12,345.6 Wh
        "energy_interval_received": [(slot - 900, 40), (slot - 600, 55), (slot - 300, 61)],
    }
    mmrs = ""
    for n, (name, uom, accumulation, flow, power_of_ten, interval) in enumerate(CHANNELS):
        sets = "".join(
            f"<MirrorReadingSet><mRID>{tag}{n}{i:05d}{'0' * 25}</mRID><timePeriod><duration>300</duration>"
            f"<start>{t}</start></timePeriod><Reading><timePeriod><duration>300</duration><start>{t}</start>"
            f"</timePeriod><value>{v}</value></Reading></MirrorReadingSet>"
            for i, (t, v) in enumerate(readings[name])
        )
        length = f"<intervalLength>{interval}</intervalLength>" if interval else ""
        mmrs += (
            f"<MirrorMeterReading><mRID>{tag}{n}{'F' * 29}0</mRID><description>{name}</description>{sets}"
            f"<ReadingType><accumulationBehaviour>{accumulation}</accumulationBehaviour><commodity>1</commodity>"
            f"<flowDirection>{flow}</flowDirection>{length}<kind>{37 if uom == 38 else 12}</kind>"
            f"<phase>0</phase><powerOfTenMultiplier>{power_of_ten}</powerOfTenMultiplier><uom>{uom}</uom>"
            f"</ReadingType></MirrorMeterReading>"
        )
    body = (
        f"<MirrorUsagePoint {SEP}><mRID>{tag}{'E' * 30}0</mRID><description>site meter</description>"
        f"<roleFlags>03</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI>{mmrs}</MirrorUsagePoint>"
    )
    return body, readings


class Checks:
    def __init__(self) -> None:
        self.passed = self.failed = 0

    async def run(self, name: str, check: Callable[[], Awaitable[None]]) -> bool:
        started = time.monotonic()
        try:
            await check()
        except Exception as exc:
            self.failed += 1
            detail = "".join(traceback.format_exception_only(exc)).strip()
            print(f"FAIL  {name}: {detail}", flush=True)
            return False
        self.passed += 1
        print(f"PASS  {name} ({time.monotonic() - started:.2f} s)", flush=True)
        return True


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


async def as_client(
    checks: Checks,
    label: str,
    host: str,
    port: int,
    pki: Path,
    client: dict[str, str],
    server_lfdi: str,
    mirror_for: str,
) -> None:
    """Mirror as `client`, then let aio2030dot5 discover and read it back."""
    cert, key = Path(client["cert"]), Path(client["key"])
    plain = Plain(host, port, pki / "ca.pem", cert, key)
    state: dict[str, object] = {}
    timeouts = Timeouts(connect=10, handshake=20, response=20, batch=120)
    meter = await Meter.from_files(
        host, cert, key, port, timeouts=timeouts, min_connect_interval=0.0, request_spacing=0.0
    )

    async def mirror() -> None:
        status, edev = plain.post("/edev", end_device_body(mirror_for))
        expect(status == 201 and edev.startswith("/edev/"), f"registration answered {status} {edev!r}")
        body, readings = mirror_body(mirror_for, "A" if label == "aggregator" else "D", int(time.time()))
        status, mup = plain.post("/mup", body)
        expect(status == 201 and mup.startswith("/mup/"), f"MirrorUsagePoint answered {status} {mup!r}")
        state["upt"], state["readings"] = mup.replace("/mup/", "/upt/"), readings

    if not await checks.run(f"{label}: registers and mirrors a site meter (stdlib HTTPS)", mirror):
        return

    async def probe_tls() -> None:
        peer = await meter.probe_tls()
        expect(peer.client_accepted, f"our certificate was refused: {peer.auth_reason}")
        expect(peer.lfdi == server_lfdi, f"server certificate lFDI {peer.lfdi}, expected {server_lfdi}")

    await checks.run(f"{label}: probe_tls sees the server certificate and is accepted", probe_tls)

    async def probe() -> None:
        info = await meter.probe()  # DeviceCapability -> SelfDevice -> DeviceInformation
        expect(info.lfdi == server_lfdi, f"SelfDevice/DeviceInformation lFDI {info.lfdi} is not the server's")
        expect(info.certificate_lfdi == server_lfdi, "certificate lFDI differs")
        expect(info.model == "GridShare", f"DeviceInformation mfModel {info.model!r}")
        expect(bool(info.software_version), "no swVer")

    await checks.run(f"{label}: probe reads SelfDevice and DeviceInformation (the server's own)", probe)

    async def discover() -> None:
        profile = await meter.discover()
        state["profile"] = profile
        expect(profile.meter_lfdi == server_lfdi, f"SelfDevice lFDI {profile.meter_lfdi}")
        expect(profile.certificate_lfdi == server_lfdi, "discovery pinned another certificate")
        expect(profile.usage_point_href == state["upt"], f"{profile.usage_point_href} is not {state['upt']}")
        keys = sorted(c.key for c in profile.channels)
        expect(keys == sorted(c[0] for c in CHANNELS), f"channels {keys}")
        expect(not any(c.ambiguous for c in profile.channels), "ambiguous channels")

    if not await checks.run(f"{label}: discover walks UsagePoint -> MeterReadings -> ReadingTypes", discover):
        return
    profile = state["profile"]
    readings: dict[str, list[tuple[int, int]]] = state["readings"]  # type: ignore[assignment]

    async def read() -> None:
        snap = await meter.read(profile, profile.channels, include_time=True)  # type: ignore[attr-defined]
        expect(not snap.errors, f"errors {snap.errors}")
        expect(snap.values["power"].value == -1500.0, f"power {snap.values['power']}")
        energy = snap.values["energy_summation_delivered"]
        expect(energy.value == 12345.6 and energy.unit == "Wh", f"energy {energy}")
        expect(
            snap.clock_skew is not None and abs(snap.clock_skew.total_seconds()) < 5,
            f"skew {snap.clock_skew}",
        )

    await checks.run(f"{label}: read gives the newest values, scaled, and the clock", read)

    async def intervals() -> None:
        channel = profile.channel("energy_interval_received")  # type: ignore[attr-defined]
        got = await meter.read_latest_intervals(channel)
        want = [(datetime.fromtimestamp(t, UTC), float(v)) for t, v in readings["energy_interval_received"]]
        expect([(i.start, i.value) for i in got] == want, f"intervals {got}")
        since = await meter.read_intervals_since(channel, want[1][0])
        expect([i.value for i in since] == [55.0, 61.0], f"since {since}")
        history = await meter.list_interval_sets(channel)
        expect(len(history) >= 1 and all(s.reading_list_href for s in history), f"sets {history}")

    await checks.run(f"{label}: interval data through ReadingSets and ReadingLists", intervals)

    async def device_information() -> None:
        info = await meter.device_information(profile)  # type: ignore[arg-type]
        expect(info is not None and info.lfdi == server_lfdi, f"DeviceInformation {info}")

    await checks.run(f"{label}: device_information", device_information)


async def main(host: str, port: int, pki: Path) -> int:
    index = json.loads((pki / "clients.json").read_text())
    clients = {c["name"]: c for c in index["clients"]}
    device = next(c for c in clients.values() if c["kind"] == "device")
    other = next(c for c in clients.values() if c["kind"] == "device" and c is not device)
    aggregator = next(c for c in clients.values() if c["kind"] == "aggregator")
    server_lfdi = lfdi_of(Path(index.get("server_cert") or pki / "server.pem"))
    checks = Checks()
    print(f"GridShare at {host}:{port}, server lFDI {server_lfdi}", flush=True)
    await as_client(checks, "device", host, port, pki, device, server_lfdi, device["lfdi"])
    site_lfdi = hashlib.sha256(b"interop aggregator site").hexdigest()[:LFDI_HEX].upper()
    await as_client(checks, "aggregator", host, port, pki, aggregator, server_lfdi, site_lfdi)

    async def scoped() -> None:
        plain = Plain(host, port, pki / "ca.pem", Path(other["cert"]), Path(other["key"]))
        plain.post("/edev", end_device_body(other["lfdi"]))
        meter = await Meter.from_files(
            host, Path(other["cert"]), Path(other["key"]), port, min_connect_interval=0.0, request_spacing=0.0
        )
        try:
            profile = await meter.discover()
        except MeterProtocolError as exc:
            expect("no UsagePoint" in str(exc), f"unexpected refusal: {exc}")
            return
        raise AssertionError(f"another device's mirror is visible: {profile.usage_point_href}")

    await checks.run("scope: a device without mirrors discovers no one else's", scoped)
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))))
