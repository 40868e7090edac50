"""One connection point's controller: self-consumption first, then the active limits, step by step.

The limits in CSIP-AUS apply at the connection point (net export and net import), so the site
gateway, not each device, meets them: surplus PV charges the battery before PV is curtailed, and a
binding import limit discharges the battery before EV charging is cut. A non-compliant site runs
the same logic with the limits ignored; the simulator keeps a compliant twin beside it so the
network can be solved both ways (who broke the constraint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridshare.sim.devices import Battery, EvCharger, PvInverter
from gridshare.sim.events import ControlBase


@dataclass(frozen=True)
class SiteStep:
    """What a site did over one step (average watts; export positive at the connection point)."""

    net_export_w: float
    pv_w: float
    pv_available_w: float
    load_w: float
    ev_w: float
    ev_wanted_w: float
    battery_w: float  # charging positive
    soc_share: float  # state of charge as a share of capacity (nan without a battery)
    #: what the limits alone would have let PV make had the inverter not been ramping (>= pv_w)
    pv_allowed_w: float = 0.0

    @property
    def ramp_held_w(self) -> float:
        """PV held back by the soft ramp-up (AS/NZS 4777.2) beyond what the limits held back."""
        return min(max(self.pv_allowed_w - self.pv_w, 0.0), self.curtailed_w)

    @property
    def limited_w(self) -> float:
        """PV held back by a limit (export, generation, disconnect): curtailment proper."""
        return self.curtailed_w - self.ramp_held_w

    @property
    def curtailed_w(self) -> float:
        """All PV not produced: held back by limits plus by the ramp."""
        return max(self.pv_available_w - self.pv_w, 0.0)

    @property
    def ev_deferred_w(self) -> float:
        return max(self.ev_wanted_w - self.ev_w, 0.0)


def _limit(value: float | None) -> float:
    return math.inf if value is None else max(value, 0.0)


@dataclass
class SiteModel:
    """The devices behind one NMI and the gateway logic that keeps them within the limits."""

    pv: PvInverter | None = None
    battery: Battery | None = None
    ev: EvCharger | None = None

    def step(
        self,
        control: ControlBase,
        pv_available_w: float,
        load_w: float,
        local_hour: float,
        dt_s: float,
        obey: bool = True,
    ) -> SiteStep:
        """Advance one step under `control` (ignored when `obey` is False) and return what happened."""
        export_cap = _limit(control.export_limit_w) if obey else math.inf
        import_cap = _limit(control.import_limit_w) if obey else math.inf
        gen_cap = _limit(control.generation_limit_w) if obey else math.inf
        load_cap = _limit(control.load_limit_w) if obey else math.inf
        off = obey and (control.connect is False or control.energize is False)

        available = min(pv_available_w, self.pv.rated_w) if self.pv else 0.0
        pv_ceiling = self.pv.ceiling_w(pv_available_w, dt_s) if self.pv else 0.0
        ev_want = self.ev.demand_w(local_hour, dt_s) if self.ev else 0.0
        charge_room = self.battery.charge_room_w(dt_s) if self.battery and not off else 0.0
        discharge_room = self.battery.discharge_room_w(dt_s) if self.battery and not off else 0.0
        caps = _Caps(export_cap, import_cap, gen_cap, load_cap, off)
        pv, ev, bat, net = _dispatch(caps, pv_ceiling, load_w, ev_want, charge_room, discharge_room)
        # What the limits alone would have let PV make, had the inverter not been ramping: the gap to
        # the actual output is the ramp's doing, the gap to the available power the limits'.
        pv_allowed = pv
        if pv_ceiling < available:
            pv_allowed = _dispatch(caps, available, load_w, ev_want, charge_room, discharge_room)[0]

        if self.pv:
            self.pv.set_output(pv)
        if self.battery:
            self.battery.apply(bat, dt_s)
        if self.ev:
            self.ev.deliver(ev, dt_s)
        soc = self.battery.soc_wh / self.battery.capacity_wh if self.battery else math.nan
        return SiteStep(
            net_export_w=net,
            pv_w=pv,
            pv_available_w=available,
            load_w=load_w,
            ev_w=ev,
            ev_wanted_w=ev_want,
            battery_w=bat,
            soc_share=soc,
            pv_allowed_w=max(pv_allowed, pv),
        )


@dataclass(frozen=True)
class _Caps:
    """The limits a step is under (watts; inf where none), and whether the site must be off."""

    export_w: float
    import_w: float
    generation_w: float
    load_w: float
    off: bool


def _dispatch(
    caps: _Caps, pv_ceiling: float, load_w: float, ev_want: float, charge_room: float, discharge_room: float
) -> tuple[float, float, float, float]:
    """The gateway's decision for one step: (pv, ev, battery, net export) in watts, changing no device."""
    pv = 0.0 if caps.off else min(pv_ceiling, caps.generation_w)
    ev = 0.0 if caps.off else ev_want
    # Self-consumption: surplus charges, deficit discharges, within the battery's room.
    surplus = pv - load_w - ev
    bat = min(max(surplus, -discharge_room), charge_room)
    # Controllable consumption (EV plus charging) within the load limit.
    if ev + max(bat, 0.0) > caps.load_w:
        bat = min(bat, max(caps.load_w - ev, 0.0)) if bat > 0 else bat
        ev = min(ev, caps.load_w)
    net = pv - load_w - ev - bat
    if net > caps.export_w:  # soak up more in the battery, then curtail PV
        extra = min(net - caps.export_w, charge_room - bat, max(caps.load_w - ev - max(bat, 0.0), 0.0))
        bat += max(extra, 0.0)
        net = pv - load_w - ev - bat
        if net > caps.export_w:
            pv = max(pv - (net - caps.export_w), 0.0)
            net = pv - load_w - ev - bat
    if -net > caps.import_w:  # discharge more, then cut EV charging; base load cannot be cut
        need = -net - caps.import_w
        more = min(need, bat + discharge_room)
        bat -= more
        need -= more
        cut = min(need, ev)
        ev -= cut
        net = pv - load_w - ev - bat
    return pv, ev, bat, net
