"""An i-MiEV-like kei EV on a drive cycle: traction battery, motor, regenerative braking, and its ground truth.

Same cycles and road load as the petrol car. Wheel power becomes battery power through the drive's
efficiency (or, braking above a few km/h, comes back through the regeneration efficiency up to a power
limit); accessories always draw. The pack is an open-circuit voltage that rises with state of charge behind an
internal resistance, so the current for a power follows from P = (OCV − I·R)·I. The car broadcasts what the
i-MiEV broadcasts (mitsubishi_i_miev.dbc): it is not polled. Its truth is the DC energy out of the pack,
the number the agent's −V·I integral is judged against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_bridge.constants import KMH_PER_MS, S_PER_H
from firmware_bridge.vehicles import bundled_folder
from firmware_bridge.sim.broadcast import BroadcastSchedule
from firmware_bridge.sim.car import CycleFollower, road_load_power_w
from firmware_bridge.sim.cycles import Cycle

IMIEV_DBC_PATH = bundled_folder("mitsubishi-i-miev") / "mitsubishi_i_miev.dbc"
_S_PER_MIN = 60.0
_W_PER_KW = 1000.0
#: i-MiEV shift lever code for D (published reverse-engineering, 0x418).
SHIFT_D = 0x44


@dataclass(frozen=True)
class EvConfig:
    """An i-MiEV-like kei EV. Battery, cells, voltage and the 47 kW cap are the i-MiEV's (Mitsubishi's catalog); the
    rest are plausible round numbers, not a spec sheet.

    Tuned so Japan's WLTC takes about 100 Wh/km out of the pack (DC; the catalog's AC figures run higher).
    """

    mass_kg: float = 1100.0  # 1,080 kg curb (Wikipedia) plus a little
    drag_area_m2: float = 0.70
    rolling_resistance: float = 0.010
    ambient_c: float = 20.0
    baro_kpa: float = 101.0
    battery_kwh: float = 16.0
    cells: int = 88
    #: Cell open-circuit voltage at 0 % and 100 % state of charge (linear between): ~330 V nominal for 88 cells.
    cell_ocv_empty_v: float = 3.45
    cell_ocv_full_v: float = 4.10
    pack_resistance_ohm: float = 0.10
    soc_start_pct: float = 90.0
    #: Battery DC to wheel while driving (inverter, motor, reduction gear), and wheel to battery while braking.
    drive_efficiency: float = 0.88
    regen_efficiency: float = 0.75
    regen_max_kw: float = 25.0
    #: Below this speed the friction brakes stop the car: no regeneration.
    regen_min_speed_kmh: float = 8.0
    #: 12 V DC/DC, pumps and controllers while the car is on.
    accessory_power_w: float = 350.0
    max_power_kw: float = 47.0
    reduction_ratio: float = 7.065
    tyre_circumference_m: float = 1.81
    #: The published 0x412 test frame's odometer (OVMS vehicle_mitsubishi).
    odometer_start_km: float = 94759.0
    #: What the car's range display assumes per km.
    range_wh_per_km: float = 125.0
    motor_warm_up_c: float = 25.0
    motor_warm_up_tau_s: float = 900.0
    steps_per_s: int = 20

    @property
    def nominal_v(self) -> float:
        return self.cells * (self.cell_ocv_empty_v + self.cell_ocv_full_v) / 2

    @property
    def capacity_ah(self) -> float:
        return self.battery_kwh * _W_PER_KW / self.nominal_v


@dataclass(frozen=True)
class EvState:
    """What the EV's ECUs could report at one instant (t_s = seconds since the drive start)."""

    t_s: float
    ignition: bool
    key_on: bool
    speed_kmh: float
    accel_ms2: float
    motor_rpm: float
    accel_pedal_pct: float
    pack_power_kw: float  # out of the pack; negative while regenerating
    pack_voltage_v: float
    pack_current_a: float  # the bus convention: negative = discharge
    cell_v_max: float
    cell_v_min: float
    soc_pct: float
    range_km: float
    motor_temp_c: float
    odometer_km: float
    shift_lever: int


@dataclass(frozen=True)
class EvTruth:
    """What really happened so far: DC energy out of the pack (net of regeneration) and what was regenerated."""

    distance_km: float
    energy_kwh: float
    energy_regen_kwh: float
    duration_s: float
    soc_start_pct: float
    soc_end_pct: float

    @property
    def wh_per_km(self) -> float:
        return 1000.0 * self.energy_kwh / self.distance_km if self.distance_km > 0 else math.nan


@dataclass(frozen=True)
class _EvIntegrals:
    distance_km: float = 0.0
    energy_kwh: float = 0.0
    regen_kwh: float = 0.0
    discharge_ah: float = 0.0


class ElectricKeiCar(CycleFollower):
    """The EV on a cycle: `advance_to(t_s)` then read `state` and `truth`."""

    def __init__(self, config: EvConfig | None = None, cycle: Cycle | None = None) -> None:
        if cycle is None:
            raise ValueError("ElectricKeiCar needs a cycle (see firmware_bridge.sim.cycles.load_cycle)")
        self.config = config or EvConfig()
        super().__init__(cycle, self.config.steps_per_s, _EvIntegrals())

    @property
    def truth(self) -> EvTruth:
        cfg = self.config
        return EvTruth(distance_km=self._at_t.distance_km, energy_kwh=self._at_t.energy_kwh,
                       energy_regen_kwh=self._at_t.regen_kwh, duration_s=min(self._t_s, self.cycle.duration_s),
                       soc_start_pct=cfg.soc_start_pct, soc_end_pct=self._soc_pct(self._at_t))

    def _step(self, start: _EvIntegrals, mid: EvState, dt_s: float) -> _EvIntegrals:
        energy_kwh = mid.pack_power_kw * dt_s / S_PER_H
        return _EvIntegrals(
            distance_km=start.distance_km + mid.speed_kmh * dt_s / S_PER_H,
            energy_kwh=start.energy_kwh + energy_kwh,
            regen_kwh=start.regen_kwh + max(-energy_kwh, 0.0),
            discharge_ah=start.discharge_ah - mid.pack_current_a * dt_s / S_PER_H,
        )

    def _soc_pct(self, integrals: _EvIntegrals) -> float:
        return self.config.soc_start_pct - 100.0 * integrals.discharge_ah / self.config.capacity_ah

    def _pack_power_w(self, speed_kmh: float, wheel_power_w: float) -> float:
        """Battery power out for a wheel power: through the drive, or back through regeneration when allowed."""
        cfg = self.config
        if wheel_power_w >= 0.0:
            return wheel_power_w / cfg.drive_efficiency + cfg.accessory_power_w
        if speed_kmh < cfg.regen_min_speed_kmh:
            return cfg.accessory_power_w
        regen_w = min(-wheel_power_w * cfg.regen_efficiency, cfg.regen_max_kw * _W_PER_KW)
        return cfg.accessory_power_w - regen_w

    def _compose(self, t_s: float, integrals: _EvIntegrals) -> EvState:
        cfg = self.config
        ignition = 0.0 <= t_s < self.cycle.duration_s
        speed_kmh = self.cycle.speed_kmh_at(t_s) if ignition else 0.0
        accel_ms2 = self._accel_ms2(t_s) if ignition else 0.0
        wheel_power_w = road_load_power_w(cfg.mass_kg, cfg.drag_area_m2, cfg.rolling_resistance, cfg.baro_kpa,
                                          cfg.ambient_c, speed_kmh, accel_ms2)
        power_w = self._pack_power_w(speed_kmh, wheel_power_w) if ignition else 0.0
        soc_pct = self._soc_pct(integrals)
        ocv_v = cfg.cells * (cfg.cell_ocv_empty_v + (cfg.cell_ocv_full_v - cfg.cell_ocv_empty_v) * soc_pct / 100.0)
        r = cfg.pack_resistance_ohm
        discharge_a = (ocv_v - math.sqrt(ocv_v * ocv_v - 4.0 * r * power_w)) / (2.0 * r)  # P = (OCV - I R) I
        terminal_v = ocv_v - discharge_a * r
        cell_v = terminal_v / cfg.cells
        warm_fraction = 1.0 - math.exp(-max(t_s, 0.0) / cfg.motor_warm_up_tau_s)
        return EvState(
            t_s=t_s, ignition=ignition, key_on=ignition, speed_kmh=speed_kmh, accel_ms2=accel_ms2,
            motor_rpm=speed_kmh / KMH_PER_MS / cfg.tyre_circumference_m * _S_PER_MIN * cfg.reduction_ratio,
            accel_pedal_pct=100.0 * min(1.0, max(0.0, wheel_power_w / (cfg.max_power_kw * _W_PER_KW))),
            pack_power_kw=power_w / _W_PER_KW, pack_voltage_v=terminal_v, pack_current_a=-discharge_a,
            cell_v_max=cell_v + 0.01, cell_v_min=cell_v - 0.01, soc_pct=soc_pct,
            range_km=soc_pct / 100.0 * cfg.battery_kwh * _W_PER_KW / cfg.range_wh_per_km,
            motor_temp_c=cfg.ambient_c + cfg.motor_warm_up_c * warm_fraction,
            odometer_km=cfg.odometer_start_km + integrals.distance_km, shift_lever=SHIFT_D,
        )


#: Which EvState attribute feeds each signal of mitsubishi_i_miev.dbc, per message.
IMIEV_SIGNAL_SOURCES: dict[str, dict[str, str]] = {
    "IMIEV_KEY": {"key_on": "key_on"},
    "IMIEV_PEDAL": {"accel_pedal_pct": "accel_pedal_pct"},
    "IMIEV_ABS_SPEED": {"abs_speed_kmh": "speed_kmh"},
    "IMIEV_MOTOR": {"motor_temp_c": "motor_temp_c", "motor_rpm": "motor_rpm"},
    "IMIEV_RANGE": {"range_km": "range_km"},
    "IMIEV_BATTERY": {"cell_v_max": "cell_v_max", "cell_v_min": "cell_v_min", "pack_current_a": "pack_current_a",
                      "pack_voltage_v": "pack_voltage_v"},
    "IMIEV_SOC": {"soc_pct": "soc_pct"},
    "IMIEV_CLUSTER": {"speed_kmh": "speed_kmh", "odometer_km": "odometer_km"},
    "IMIEV_SHIFT": {"shift_lever": "shift_lever"},
}


def imiev_broadcast_schedule() -> BroadcastSchedule:
    """The i-MiEV's broadcast, at the periods its DBC gives."""
    return BroadcastSchedule(IMIEV_DBC_PATH, IMIEV_SIGNAL_SOURCES)
