"""Physical device models behind one connection point: PV, battery, load and EV charger.

Each model is a few lines of state and arithmetic per step, because a fleet of thousands must step
in real time on one core. Powers are watts, energies watt-hours, times seconds. The site controller
(`sim/site.py`) decides setpoints; these models say what is physically possible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class PvInverter:
    """A PV array and inverter: output follows the available power, capped, rising no faster than the ramp.

    The ramp limits increases only (a soft ramp-up, as AS/NZS 4777.2 inverters do); reductions to
    meet a limit are immediate, so a ramp never makes a device exceed its limit.
    """

    rated_w: float
    ramp_w_per_s: float = math.inf
    output_w: float = 0.0

    def ceiling_w(self, available_w: float, dt_s: float) -> float:
        """The most the inverter can produce this step: available, rated, and the ramp from now."""
        return max(0.0, min(available_w, self.rated_w, self.output_w + self.ramp_w_per_s * dt_s))

    def set_output(self, watts: float) -> None:
        self.output_w = max(0.0, watts)


@dataclass
class Battery:
    """A battery with a state of charge, power limits and a one-way efficiency applied each way."""

    capacity_wh: float
    charge_max_w: float
    discharge_max_w: float
    soc_wh: float = 0.0
    efficiency: float = 0.95
    reserve_share: float = 0.1  # kept for backup: never discharged below this share of capacity

    def charge_room_w(self, dt_s: float) -> float:
        """Largest charging power (from the AC side) this step without overfilling."""
        room_wh = max(self.capacity_wh - self.soc_wh, 0.0)
        return min(self.charge_max_w, room_wh / (self.efficiency * dt_s / 3600.0)) if dt_s > 0 else 0.0

    def discharge_room_w(self, dt_s: float) -> float:
        """Largest discharging power (to the AC side) this step without going below the reserve."""
        usable_wh = max(self.soc_wh - self.reserve_share * self.capacity_wh, 0.0)
        return min(self.discharge_max_w, usable_wh * self.efficiency / (dt_s / 3600.0)) if dt_s > 0 else 0.0

    def apply(self, power_w: float, dt_s: float) -> None:
        """Charge (positive) or discharge (negative) at an AC power for one step."""
        hours = dt_s / 3600.0
        if power_w >= 0:
            self.soc_wh += power_w * hours * self.efficiency
        else:
            self.soc_wh += power_w * hours / self.efficiency
        self.soc_wh = min(max(self.soc_wh, 0.0), self.capacity_wh)


@dataclass
class EvCharger:
    """An EV charger: while a car is plugged in and not full, it wants its full power; it can go lower.

    The car arrives at `arrive_h` and leaves at `depart_h` (local hours, wrapping midnight) needing
    `energy_wh`; charging below demand (an import limit) leaves energy undelivered, which is what
    the report counts as deferred load.
    """

    max_w: float
    energy_wh: float
    arrive_h: float = 18.0
    depart_h: float = 7.5
    delivered_wh: float = 0.0
    _plugged: bool = False

    def plugged_in(self, local_hour: float) -> bool:
        if self.arrive_h <= self.depart_h:
            return self.arrive_h <= local_hour < self.depart_h
        return local_hour >= self.arrive_h or local_hour < self.depart_h

    def demand_w(self, local_hour: float, dt_s: float) -> float:
        plugged = self.plugged_in(local_hour)
        if plugged and not self._plugged:
            self.delivered_wh = 0.0  # a new session
        self._plugged = plugged
        if not plugged or dt_s <= 0:
            return 0.0
        remaining_wh = max(self.energy_wh - self.delivered_wh, 0.0)
        return min(self.max_w, remaining_wh / (dt_s / 3600.0))

    def deliver(self, power_w: float, dt_s: float) -> None:
        self.delivered_wh += max(power_w, 0.0) * dt_s / 3600.0
