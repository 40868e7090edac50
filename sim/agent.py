"""One simulated site's CSIP-AUS client: discovery, registration, polling, responses and telemetry.

It does what a gateway's firmware does, over real mutual TLS: read DeviceCapability, register its
EndDevice (with its own certificate, or through an aggregator's), give its NMI as the ConnectionPoint,
walk FunctionSetAssignments -> DERPrograms -> DERControlList + DefaultDERControl, and then poll at the
rates the server advertises, post Responses where controls ask for them, and mirror its net power to
a MirrorUsagePoint at the rate that MirrorUsagePoint gives (its own `postRate`, which governs
posting to it, IEEE 2030.5 MirrorUsagePoint.postRate; the EndDevice's `postRate` is for the
EndDevice and the resources under it). Between polls and through outages it acts on its cached schedule
(`sim/events.py`); once no exchange has succeeded for `fallback_timeout_s` it is in fallback and applies
its DefaultDERControl until an exchange succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gridshare.sim import wire
from gridshare.sim.clock import SharedClock
from gridshare.sim.events import ControlBase, EventBook

log = logging.getLogger("gridshare.sim")


class CommsDown(Exception):
    """The exchange did not happen: a simulated outage, a network error or a server error."""


@dataclass
class LinkStats:
    """Request counts and latencies seen by the fleet (wall-clock milliseconds)."""

    by_kind: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    blocked: Counter[str] = field(default_factory=Counter)  # not sent: a simulated outage

    def record(self, kind: str, ms: float, ok: bool) -> None:
        self.by_kind[kind] += 1
        if ok:
            self.latencies_ms.append(ms)
        else:
            self.errors[kind] += 1


class Link:
    """An HTTPS connection pool presenting one client certificate (a device's, or an aggregator's)."""

    def __init__(
        self,
        base_url: str,
        ca_path: Path,
        cert_path: Path,
        key_path: Path,
        stats: LinkStats,
        timeout_s: float = 30.0,
        connections: int = 1,
    ) -> None:
        tls = ssl.create_default_context(cafile=str(ca_path))
        tls.load_cert_chain(str(cert_path), str(key_path))
        self.stats = stats
        self.client = httpx.AsyncClient(
            base_url=base_url,
            verify=tls,
            timeout=timeout_s,
            headers={"Accept": wire.MEDIA_TYPE},
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def request(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes | None = None,
        params: dict[str, int] | None = None,
        expected: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send one request; `expected` statuses (a 409 the caller handles) do not count as errors."""
        t0 = time.perf_counter()
        try:
            response = await self.client.request(
                method,
                path,
                content=body,
                params=params,
                headers={"Content-Type": wire.MEDIA_TYPE} if body is not None else None,
            )
        except httpx.HTTPError as exc:
            self.stats.record(kind, 0.0, ok=False)
            raise CommsDown(f"{method} {path}: {type(exc).__name__}") from exc
        ms = (time.perf_counter() - t0) * 1000.0
        ok = response.status_code < 400 or response.status_code in expected
        self.stats.record(kind, ms, ok)
        if response.status_code >= 500:
            raise CommsDown(f"{method} {path}: HTTP {response.status_code}")
        return response

    async def close(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class Outages:
    """Simulated outage windows [from, until) in simulated seconds."""

    windows: tuple[tuple[float, float], ...] = ()

    def down(self, t_s: float) -> bool:
        return any(a <= t_s < b for a, b in self.windows)


#: What IEEE 2030.5 says a client uses when a postRate is absent (schema annotation of postRate).
DEFAULT_POST_RATE_S = 900


@dataclass
class Rates:
    dcap_s: int = 900
    fsa_s: int = 900
    derp_s: int = 300
    post_s: int = DEFAULT_POST_RATE_S  # EndDevice.postRate: the EndDevice and resources under it
    mirror_post_s: int = DEFAULT_POST_RATE_S  # MirrorUsagePoint.postRate: readings to that mirror


class ProtocolError(RuntimeError):
    """The server answered, but not as a CSIP-AUS client expects (4xx, or a missing link)."""


class SiteAgent:
    def __init__(
        self,
        site_id: str,
        nmi: str,
        lfdi: str,
        sfdi: int,
        link: Link,
        clock: SharedClock,
        book: EventBook,
        outages: Outages,
        fallback_timeout_s: float,
        page_size: int = 64,
        managed: bool = False,
        seed: int = 0,
    ) -> None:
        self.site_id, self.nmi, self.lfdi, self.sfdi = site_id, nmi, lfdi, sfdi
        self.link, self.clock, self.book, self.outages = link, clock, book, outages
        self.fallback_timeout_s = fallback_timeout_s
        self.page_size = page_size
        self.managed = managed  # registered by an aggregator rather than by its own certificate
        self.rates = Rates()
        self.edev: wire.EndDevice | None = None
        self.programs: list[wire.Program] = []
        self.mup: str | None = None
        self.mmr_mrid = wire.mrid_for("mmr", site_id, lfdi)  # a mirror is one device's
        self.last_success_s = clock.now()
        self.fallback_periods: list[tuple[float, float | None]] = []
        self.responses_posted = 0
        self.problems: list[str] = []
        self.nmi_refused = False  # the server refused our NMI: another EndDevice holds it
        self._rng = random.Random(f"{seed}:{site_id}")
        self._energy_wh = 0.0
        self._energy_from_s: float | None = None
        self._poll_now = False
        self._fallback_from_s: float | None = None

    # -- state the physics loop reads --------------------------------------------------------------
    def in_fallback(self, t_s: float) -> bool:
        """No exchange has succeeded for the timeout (a request still in flight does not count yet)."""
        fallback = t_s - self.last_success_s >= self.fallback_timeout_s
        if fallback and self._fallback_from_s is None:
            self._fallback_from_s = self.last_success_s + self.fallback_timeout_s
        return fallback

    def control_at(self, t_s: float) -> ControlBase:
        return self.book.control_at(t_s, fallback=self.in_fallback(t_s))

    def record(self, t_s: float, dt_s: float, net_export_w: float) -> None:
        """Accumulate the site's metered net power for the next telemetry post."""
        if self._energy_from_s is None:
            self._energy_from_s = t_s
        self._energy_wh += net_export_w * dt_s / 3600.0

    def close_fallback(self, end_s: float) -> None:
        """At the end of a run: a device still in fallback has an open period."""
        if self.in_fallback(end_s) and self._fallback_from_s is not None:
            self.fallback_periods.append((self._fallback_from_s, None))

    # -- exchanges ---------------------------------------------------------------------------------
    async def _call(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes | None = None,
        params: dict[str, int] | None = None,
        expected: tuple[int, ...] = (),
    ) -> httpx.Response:
        if self.outages.down(self.clock.now()):
            self.link.stats.blocked[kind] += 1
            raise CommsDown("simulated outage")
        sent_s = self.clock.now()
        response = await self.link.request(kind, method, path, body, params, expected)
        self._succeeded(sent_s, self.clock.now())
        if response.status_code >= 400 and response.status_code not in expected:
            raise ProtocolError(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response

    def _succeeded(self, sent_s: float, arrived_s: float) -> None:
        """An answer arrived: contact is proven as of when the request left (at high acceleration the
        answer lands much later in simulated time), and a fallback period ends now."""
        began = self._fallback_from_s
        if began is None and arrived_s - self.last_success_s >= self.fallback_timeout_s:
            began = self.last_success_s + self.fallback_timeout_s  # fell back and back between two steps
        if began is not None:
            self.fallback_periods.append((began, arrived_s))
            self._fallback_from_s = None
            self._poll_now = True  # back from fallback: fetch the schedule before anything else
        self.last_success_s = max(self.last_success_s, sent_s)

    async def register(self) -> None:
        """DeviceCapability -> EndDevice (registering it if needed) -> ConnectionPoint with the NMI.

        A device with its own certificate first looks for its EndDevice in the EndDeviceList (2030.5
        Annex C.6; the server shows a device only its own), and registers only if it is not there. The
        DeviceCapability's SelfDeviceLink is no help: it names the server, not the client (§8.4).
        """
        dcap = wire.device_capability(wire.parse((await self._call("dcap", "GET", "/dcap")).content))
        self.rates.dcap_s = dcap.poll_rate_s
        href = None if self.managed else await self.find_end_device(dcap.edev_list)
        if href is None:
            href = await self._register_end_device(dcap.edev_list)
        self.edev = wire.end_device(wire.parse((await self._call("edev", "GET", href)).content))
        if self.edev.post_rate_s:
            self.rates.post_s = self.edev.post_rate_s
        if self.edev.connection_point is None:
            raise ProtocolError(f"{href} has no ConnectionPointLink")
        answer = await self._call(
            "cp", "PUT", self.edev.connection_point, wire.connection_point_body(self.nmi), expected=(409,)
        )
        if answer.status_code == 409:
            # The server binds one NMI to one EndDevice, and another holds this one (e.g. a dev device the
            # demo bound to it): this site gets no envelope of its own and runs on its DefaultDERControl.
            self.nmi_refused = True
            log.warning(
                "site %s: NMI %s is bound to another EndDevice; running unbound", self.site_id, self.nmi
            )

    async def _register_end_device(self, edev_list: str) -> str:
        """POST the EndDevice; a 409 means this lFDI is registered already (a fleet that comes back to
        a running server), so carry on with that EndDevice: the one the answer's Location names, or
        else the one with our lFDI in the EndDeviceList."""
        body = wire.end_device_body(self.sfdi, self.lfdi, int(self.clock.now()))
        answer = await self._call("edev", "POST", edev_list, body, expected=(409,))
        href = answer.headers.get("location")
        if answer.status_code == 409:
            href = href or await self.find_end_device(edev_list)
            if not href:
                raise ProtocolError(f"{edev_list}: 409 for lFDI {self.lfdi}, which the EndDeviceList lacks")
        if not href:
            raise ProtocolError("EndDevice registration answered without a Location")
        return href

    async def find_end_device(self, edev_list: str) -> str | None:
        """The href of the EndDevice with this agent's lFDI, walking the EndDeviceList page by page."""
        start = 0
        while True:
            params = {"s": start, "l": self.page_size}
            el = wire.parse((await self._call("edev", "GET", edev_list, params=params)).content)
            for device in wire.end_devices(el):
                if device.lfdi == self.lfdi.upper() and device.href:
                    return device.href
            total, results = wire.list_counts(el)
            start += results
            if results == 0 or start >= total:
                return None

    async def discover(self) -> None:
        """FunctionSetAssignments -> DERPrograms (by primacy), then the first schedule and the mirror."""
        if self.edev is None or self.edev.fsa_list is None:
            raise ProtocolError("not registered, or the EndDevice has no FunctionSetAssignmentsListLink")
        fsa = wire.parse((await self._call("fsa", "GET", self.edev.fsa_list, params={"l": 20})).content)
        self.rates.fsa_s = wire.poll_rate_s(fsa, self.rates.fsa_s)
        found: list[wire.Program] = []
        for derp_list in wire.fsa_program_lists(fsa):
            el = wire.parse((await self._call("derp", "GET", derp_list, params={"l": 20})).content)
            self.rates.derp_s = wire.poll_rate_s(el, self.rates.derp_s)
            found.extend(wire.programs(el))
        self.programs = sorted(found, key=lambda p: p.primacy)
        await self.poll_schedule()

    async def poll_schedule(self) -> None:
        """Each program's DERControlList (as far ahead as an outage could need) and its default."""
        now = self.clock.now()
        ahead_s = now + self.fallback_timeout_s + 2 * self.rates.derp_s
        for program in self.programs:
            events = []
            start = 0
            while True:
                params = {"s": start, "l": self.page_size}
                el = wire.parse(
                    (await self._call("derc", "GET", program.control_list, params=params)).content
                )
                page = wire.controls(el, program.href, program.primacy)
                events.extend(page)
                total, results = wire.list_counts(el)
                start += results
                if results == 0 or start >= total or (page and page[-1].start_s > ahead_s):
                    break
            self.book.update_program(program.href, events, self.clock.now())
            if program.default_control:
                el = wire.parse((await self._call("dderc", "GET", program.default_control)).content)
                self.book.set_default(program.href, program.primacy, wire.default_control(el))
        self.book.forget_before(now - 3600)

    async def ensure_mirror(self) -> None:
        """Create the MirrorUsagePoint (proposing our post rate), then read back the rate it gives."""
        if self.mup is None:
            now = int(self.clock.now())
            body = wire.mirror_usage_point_body(
                wire.mrid_for("mup", self.site_id, self.lfdi),
                self.lfdi,
                self.mmr_mrid,
                self.rates.post_s,
                now,
                0.0,
            )
            created = await self._call("mup", "POST", "/mup", body)
            self.mup = created.headers.get("location")
        await self.read_mirror_rate()

    async def read_mirror_rate(self) -> None:
        """The server may set or change the mirror's postRate (2030.5): that is how often readings go."""
        if not self.mup:
            return
        mirror = wire.mirror_usage_point(wire.parse((await self._call("mup", "GET", self.mup)).content))
        self.rates.mirror_post_s = mirror.post_rate_s or DEFAULT_POST_RATE_S

    async def post_telemetry(self) -> None:
        if self._energy_from_s is None:
            return
        now = self.clock.now()
        span = now - self._energy_from_s
        if span <= 0:
            return
        value_w = self._energy_wh * 3600.0 / span
        if self.mup is None:
            await self.ensure_mirror()
        if self.mup:
            body = wire.meter_reading_body(self.mmr_mrid, int(self._energy_from_s), int(span), value_w)
            await self._call("reading", "POST", self.mup, body)
        self._energy_wh, self._energy_from_s = 0.0, now

    async def post_responses(self) -> None:
        now = self.clock.now()
        for event, status in self.book.due_responses(now):
            if event.reply_to:
                body = wire.response_body(event.mrid, self.lfdi, status, int(now))
                try:
                    await self._call("response", "POST", event.reply_to, body)
                    self.responses_posted += 1
                except ProtocolError as exc:
                    self.problems.append(str(exc))
            self.book.mark_responded(event.mrid, status)

    # -- the polling loop --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Poll and post at the advertised rates (first ones spread over the interval) until `stop`."""
        now = self.clock.now()
        due = {
            "schedule": now + self._rng.uniform(0, self.rates.derp_s),
            "programs": now + self._rng.uniform(0, self.rates.fsa_s),
            "dcap": now + self._rng.uniform(0, self.rates.dcap_s),
            "post": now + self._rng.uniform(0, self.rates.mirror_post_s),
        }
        every = {
            "schedule": lambda: self.rates.derp_s,
            "programs": lambda: self.rates.fsa_s,
            "dcap": lambda: self.rates.dcap_s,
            "post": lambda: self.rates.mirror_post_s,
        }
        while not stop.is_set():
            if self._poll_now:
                due["schedule"] = min(due["schedule"], self.clock.now())
                self._poll_now = False
            kind = min(due, key=due.__getitem__)
            sleeper = asyncio.ensure_future(self.clock.sleep_until(due[kind]))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            stopper.cancel()
            if stop.is_set():
                return
            due[kind] = self.clock.now() + every[kind]()
            try:
                if kind == "schedule":
                    await self.poll_schedule()
                elif kind == "programs":
                    await self.discover()
                elif kind == "dcap":
                    await self._call("dcap", "GET", "/dcap")
                    await self.read_mirror_rate()  # an operator may have changed it
                else:
                    await self.post_telemetry()
                await self.post_responses()
            except CommsDown:
                continue
            except ProtocolError as exc:
                self.problems.append(str(exc))
                log.warning("%s: %s", self.site_id, exc)
