"""Physical model of a 658 cc kei car driving a speed trace: every sensor value and the ground truth.

The car follows the cycle's speed exactly; the model works back from the road load to the engine: wheel power ->
brake power -> indicated power (plus friction, pumping and accessories) -> air mass through a constant indicated
specific fuel consumption -> manifold pressure by inverting speed-density with the engine's TRUE volumetric
efficiency. The fuel burnt is that air / (AFR * lambda). So the true air flow IS speed-density at the true VE,
and a telemetry estimate using the same VE should agree closely, while estimates with a guessed VE, MAF-only
or fuel-cut-unaware maths show their real biases against `GroundTruth`.

Everything is a deterministic function of time and the configuration: the integrals advance on a fixed grid
(`CarConfig.steps_per_s`), so the trajectory does not depend on when, or how often, `advance_to` is called.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from firmware_bridge.constants import (
    AFR_GASOLINE,
    AIR_MOLAR_MASS_G_PER_MOL,
    GAS_CONSTANT_J_PER_MOL_K,
    GASOLINE_DENSITY_G_PER_L,
    KMH_PER_MS,
    S_PER_H,
    STANDARD_GRAVITY_MS2,
    ZERO_C_IN_K,
)
from firmware_bridge.sim.cycles import Cycle

_S_PER_MIN = 60.0
#: A four-stroke cylinder draws one charge every two crankshaft revolutions.
_REVS_PER_INTAKE = 2.0
_J_PER_KWH = 1000.0 * S_PER_H

#: SAE J1979 PID 0x03 codes; 0 = not reported, used while the engine is stopped.
FUEL_STATUS_ENGINE_OFF = 0
FUEL_STATUS_OPEN_LOOP_COLD = 1
FUEL_STATUS_CLOSED_LOOP = 2
FUEL_STATUS_OPEN_LOOP_LOAD_OR_CUT = 4

#: Commanded lambda while fuel is cut: as lean as PID 0x44 can say (2 * 65535 / 65536).
LAMBDA_FUEL_CUT = 2.0

BATTERY_RUNNING_V = 14.2
BATTERY_RESTING_V = 12.4


@dataclass(frozen=True)
class CarConfig:
    """A Suzuki R06A-like kei (658 cc NA, 5-speed manual); every number is a plausible default, not a spec sheet.

    Gearing (155/65R14, 1.75 m rolling circumference; 5th x final = 3.77): cruising at about 2300 rpm at
    40 km/h (3rd), 2150 at 60 and 2900 at 80 km/h (5th), 4400 at 120 km/h; the driver shifts down for power,
    so 130 km/h (beyond this engine in 5th with VE 0.85) runs in 4th at about 5600 rpm.

    Tuned so a WLTC class 3b drive gives about 20.5 km/L, Japan's WLTC (L+M+H) about 24 km/L and a warm
    idle about 0.4 L/h at 29 kPa MAP.

    True volumetric efficiency: `volumetric_efficiency` at `ve_peak_rpm` (the torque peak), falling off as a
    parabola to `ve_droop` (5 %) lower at `ve_peak_rpm` +/- `ve_droop_span_rpm`, i.e. 0.8075 at 800 rpm.
    """

    displacement_l: float = 0.658
    mass_kg: float = 850.0
    idle_rpm: float = 800.0
    gear_ratios: tuple[float, ...] = (3.58, 2.05, 1.38, 1.03, 0.85)
    final_drive_ratio: float = 4.44
    tyre_circumference_m: float = 1.75
    #: The driver: highest gear that keeps rpm >= upshift_rpm and load <= downshift_load_pct, never over max_rpm.
    upshift_rpm: float = 1900.0
    downshift_load_pct: float = 90.0
    max_rpm: float = 6000.0
    #: Engine speed while the clutch slips pulling away (below ~5 km/h in 1st).
    launch_rpm: float = 1200.0
    volumetric_efficiency: float = 0.85
    ve_peak_rpm: float = 4000.0
    ve_droop: float = 0.05
    ve_droop_span_rpm: float = 3200.0
    drag_area_m2: float = 0.75
    rolling_resistance: float = 0.010
    driveline_efficiency: float = 0.90
    #: Alternator, pumps and climate fan: what the engine carries at idle besides its own friction.
    accessory_power_w: float = 500.0
    #: Indicated specific fuel consumption (fuel per indicated kWh: ~39 % indicated efficiency, a modern
    #: high-compression port-injected engine).
    isfc_g_per_kwh: float = 215.0
    #: ISFC multiplier while idling or motoring without fuel cut: the ECU retards the spark to hold a torque
    #: reserve for a steady idle, trading efficiency for stability.
    idle_spark_retard_isfc_factor: float = 1.25
    #: Friction mean effective pressure a + b*krpm + c*krpm^2, kPa (pumping is added from MAP).
    fmep_kpa_coeffs: tuple[float, float, float] = (60.0, 6.0, 2.5)
    map_closed_throttle_kpa: float = 26.0
    enrichment_load_pct: float = 80.0
    enrichment_lambda: float = 0.88
    #: Open loop cold (PID 0x03 = 1) until the heated O2 sensor is ready, with a little enrichment.
    closed_loop_after_s: float = 30.0
    cold_lambda: float = 0.95
    coolant_thermostat_c: float = 88.0
    #: Coolant warming per litre of fuel burnt (engine + coolant thermal mass), and cooling time constant.
    coolant_heating_c_per_l: float = 450.0
    coolant_cooling_tau_s: float = 1500.0
    tank_l: float = 27.0
    fuel_level_start_pct: float = 80.0
    odometer_start_km: float = 12345.6
    ambient_c: float = 20.0
    baro_kpa: float = 101.0
    fuel_cut: bool = True
    fuel_cut_min_rpm_above_idle: float = 300.0
    fuel_cut_min_speed_kmh: float = 10.0
    idle_stop: bool = False
    idle_stop_delay_s: float = 2.0
    #: Deterministic engine-speed wobble (seeded, smooth, per second), rpm amplitude; 0 disables it.
    rpm_jitter_rpm: float = 8.0
    seed: int = 0
    steps_per_s: int = 20


@dataclass(frozen=True)
class CarState:
    """Everything a sensor or ECU could report at one instant (t_s = seconds since the drive start)."""

    t_s: float
    ignition: bool
    engine_running: bool
    speed_kmh: float
    accel_ms2: float
    engine_rpm: float
    throttle_pct: float
    map_kpa: float
    iat_c: float
    maf_gps: float
    lambda_: float
    fuel_rate_lph: float
    fuel_cut: bool
    fuel_system_status: int
    engine_load_pct: float
    coolant_c: float
    fuel_level_pct: float
    odometer_km: float
    battery_v: float
    run_time_s: float
    gear: int
    ambient_c: float
    baro_kpa: float


@dataclass(frozen=True)
class GroundTruth:
    """What really happened so far: the numbers telemetry estimates are judged against."""

    distance_km: float
    fuel_l: float
    duration_s: float
    idle_fuel_l: float

    @property
    def km_per_l(self) -> float:
        return self.distance_km / self.fuel_l if self.fuel_l > 0 else math.nan


@dataclass(frozen=True)
class _Integrals:
    distance_km: float = 0.0
    fuel_l: float = 0.0
    idle_fuel_l: float = 0.0
    coolant_c: float = 0.0


class CycleFollower:
    """A car that follows a cycle's speed exactly, its integrals advanced on a fixed time grid.

    Subclasses say what the car is at an instant (`_compose`) and how their integrals grow over a step
    (`_step`); this class keeps the grid, so a trajectory never depends on when `advance_to` is called.
    `advance_to(t_s)` then read `state` (t_s never goes backwards).
    """

    def __init__(self, cycle: Cycle, steps_per_s: int, integrals) -> None:
        self.cycle = cycle
        self._steps_per_s = steps_per_s
        self._step_index = 0
        self._grid = integrals
        self._at_t = integrals
        self._t_s = 0.0
        self._state = self._compose(0.0, integrals)

    def _compose(self, t_s: float, integrals):
        raise NotImplementedError

    def _step(self, start, mid, dt_s: float):
        """The integrals after dt_s, given those at its start and the state at its midpoint."""
        raise NotImplementedError

    def _integrate(self, start, t0_s: float, t1_s: float):
        """Midpoint rule: exact for distance (speed is linear within a step) and steady for the flows."""
        dt_s = t1_s - t0_s
        if dt_s <= 0.0:
            return start
        return self._step(start, self._compose((t0_s + t1_s) / 2.0, start), dt_s)

    @property
    def duration_s(self) -> float:
        return self.cycle.duration_s

    @property
    def state(self):
        return self._state

    def advance_to(self, t_s: float):
        """Integrate on the fixed grid up to t_s, then a partial step (not kept) so the state is exactly at t_s."""
        if t_s < 0.0:  # before the drive: the car is parked, ignition off
            return self._compose(t_s, self._grid)
        if t_s <= self._t_s:
            return self._state
        self._t_s = t_s
        t_end_s = min(t_s, self.cycle.duration_s)
        steps_per_s = self._steps_per_s
        last_step = math.floor(t_end_s * steps_per_s)
        while self._step_index < last_step:
            t0 = self._step_index / steps_per_s
            self._step_index += 1
            self._grid = self._integrate(self._grid, t0, self._step_index / steps_per_s)
        self._at_t = self._integrate(self._grid, self._step_index / steps_per_s, t_end_s)
        self._state = self._compose(t_s, self._at_t)
        return self._state

    def _accel_ms2(self, t_s: float) -> float:
        """Slope of the 1 Hz segment starting at or before t_s (forward difference at the sample instants)."""
        speeds = self.cycle.speeds_kmh
        i = min(int(t_s), len(speeds) - 2)
        return (speeds[i + 1] - speeds[i]) / KMH_PER_MS


def road_load_power_w(mass_kg: float, drag_area_m2: float, rolling_resistance: float, baro_kpa: float,
                      ambient_c: float, speed_kmh: float, accel_ms2: float) -> float:
    """Power at the wheels: inertia + rolling resistance + aerodynamic drag (air density from baro and ambient)."""
    speed_ms = speed_kmh / KMH_PER_MS
    if speed_ms <= 0.0:
        return 0.0
    air_density_kg_m3 = baro_kpa * AIR_MOLAR_MASS_G_PER_MOL / (GAS_CONSTANT_J_PER_MOL_K * (ambient_c + ZERO_C_IN_K))
    force_n = (mass_kg * accel_ms2 + rolling_resistance * mass_kg * STANDARD_GRAVITY_MS2
               + 0.5 * air_density_kg_m3 * drag_area_m2 * speed_ms**2)
    return force_n * speed_ms


class KeiCar(CycleFollower):
    """The petrol kei car on a cycle: `advance_to(t_s)` then read `state` and `truth`."""

    def __init__(self, config: CarConfig | None = None, cycle: Cycle | None = None) -> None:
        if cycle is None:
            raise ValueError("KeiCar needs a cycle (see firmware_bridge.sim.cycles.load_cycle)")
        self.config = config or CarConfig()
        n_samples = len(cycle.speeds_kmh)
        rng = random.Random(self.config.seed)  # stdlib Mersenne Twister: same sequence on every platform
        self._jitter = [rng.uniform(-1.0, 1.0) for _ in range(n_samples)]
        self._stop_start_s, self._moved_before = _stationary_segments(cycle.speeds_kmh)
        super().__init__(cycle, self.config.steps_per_s, _Integrals(coolant_c=self.config.ambient_c))

    @property
    def truth(self) -> GroundTruth:
        return GroundTruth(
            distance_km=self._at_t.distance_km,
            fuel_l=self._at_t.fuel_l,
            duration_s=min(self._t_s, self.cycle.duration_s),
            idle_fuel_l=self._at_t.idle_fuel_l,
        )

    # --- integration -------------------------------------------------------------------------------------

    def _step(self, start: _Integrals, mid: CarState, dt_s: float) -> _Integrals:
        fuel_l = mid.fuel_rate_lph * dt_s / S_PER_H
        cfg = self.config
        heating_c = cfg.coolant_heating_c_per_l * fuel_l
        cooling_c = (start.coolant_c - cfg.ambient_c) * dt_s / cfg.coolant_cooling_tau_s
        return _Integrals(
            distance_km=start.distance_km + mid.speed_kmh * dt_s / S_PER_H,
            fuel_l=start.fuel_l + fuel_l,
            idle_fuel_l=start.idle_fuel_l + (fuel_l if mid.speed_kmh == 0.0 else 0.0),
            coolant_c=min(cfg.coolant_thermostat_c, start.coolant_c + heating_c - cooling_c),
        )

    # --- instantaneous physics -------------------------------------------------------------------------

    def _compose(self, t_s: float, integrals: _Integrals) -> CarState:
        cfg = self.config
        ignition = 0.0 <= t_s < self.cycle.duration_s
        speed_kmh = self.cycle.speed_kmh_at(t_s) if ignition else 0.0
        common = dict(
            t_s=t_s,
            ignition=ignition,
            speed_kmh=speed_kmh,
            coolant_c=integrals.coolant_c,
            fuel_level_pct=cfg.fuel_level_start_pct - 100.0 * integrals.fuel_l / cfg.tank_l,
            odometer_km=cfg.odometer_start_km + integrals.distance_km,
            run_time_s=t_s if ignition else 0.0,
            iat_c=self._iat_c(speed_kmh, integrals.coolant_c) if ignition else cfg.ambient_c,
            ambient_c=cfg.ambient_c,
            baro_kpa=cfg.baro_kpa,
        )
        if not (ignition and self._engine_running(t_s)):
            return CarState(
                engine_running=False, accel_ms2=self._accel_ms2(t_s) if ignition else 0.0, engine_rpm=0.0,
                throttle_pct=0.0, map_kpa=cfg.baro_kpa, maf_gps=0.0, lambda_=1.0,
                fuel_rate_lph=0.0, fuel_cut=False, fuel_system_status=FUEL_STATUS_ENGINE_OFF,
                engine_load_pct=0.0, battery_v=BATTERY_RESTING_V, gear=0, **common,
            )
        return self._running_state(t_s, speed_kmh, common)

    def _running_state(self, t_s: float, speed_kmh: float, common: dict) -> CarState:
        cfg = self.config
        accel_ms2 = self._accel_ms2(t_s)
        iat_c = common["iat_c"]
        brake_power_w = self._wheel_power_w(speed_kmh, accel_ms2)
        brake_power_w = brake_power_w / cfg.driveline_efficiency if brake_power_w > 0 else brake_power_w
        gear, rpm, map_kpa = self._choose_gear(t_s, speed_kmh, brake_power_w, iat_c)
        fuel_cut = (
            cfg.fuel_cut
            and brake_power_w < 0.0
            and rpm > cfg.idle_rpm + cfg.fuel_cut_min_rpm_above_idle
            and speed_kmh > cfg.fuel_cut_min_speed_kmh
        )
        if fuel_cut:
            map_kpa = cfg.map_closed_throttle_kpa
        maf_gps = self._air_per_kpa_gps(rpm, iat_c) * map_kpa
        load_pct = 100.0 * map_kpa / cfg.baro_kpa
        if fuel_cut:
            lambda_, status = LAMBDA_FUEL_CUT, FUEL_STATUS_OPEN_LOOP_LOAD_OR_CUT
        elif load_pct > cfg.enrichment_load_pct:
            lambda_, status = cfg.enrichment_lambda, FUEL_STATUS_OPEN_LOOP_LOAD_OR_CUT
        elif t_s < cfg.closed_loop_after_s:
            lambda_, status = cfg.cold_lambda, FUEL_STATUS_OPEN_LOOP_COLD
        else:
            lambda_, status = 1.0, FUEL_STATUS_CLOSED_LOOP
        fuel_gps = 0.0 if fuel_cut else maf_gps / (AFR_GASOLINE * lambda_)
        return CarState(
            engine_running=True, accel_ms2=accel_ms2, engine_rpm=rpm,
            throttle_pct=self._throttle_pct(map_kpa), map_kpa=map_kpa, maf_gps=maf_gps,
            lambda_=lambda_, fuel_rate_lph=fuel_gps * S_PER_H / GASOLINE_DENSITY_G_PER_L, fuel_cut=fuel_cut,
            fuel_system_status=status, engine_load_pct=load_pct, battery_v=BATTERY_RUNNING_V, gear=gear,
            **common,
        )

    def _engine_running(self, t_s: float) -> bool:
        """Idle stop: off once stationary for idle_stop_delay_s after having moved; on as soon as the trace moves."""
        if not self.config.idle_stop:
            return True
        i = min(int(t_s), len(self._stop_start_s) - 1)
        stop_start_s = self._stop_start_s[i]
        if stop_start_s is None or not self._moved_before[i]:
            return True
        return t_s - stop_start_s <= self.config.idle_stop_delay_s

    def _choose_gear(
        self, t_s: float, speed_kmh: float, brake_power_w: float, iat_c: float
    ) -> tuple[int, float, float]:
        """(gear, rpm, MAP) as a driver would pick: the highest usable gear with load to spare, else the usable
        gear with the least load (most power in reserve). Neutral (gear 0, idle) at standstill."""
        cfg = self.config
        jitter_rpm = cfg.rpm_jitter_rpm * self._jitter_at(t_s)
        if speed_kmh <= 0.0:
            rpm = cfg.idle_rpm + jitter_rpm
            return 0, rpm, self._map_for_power_kpa(0.0, rpm, self._air_per_kpa_gps(rpm, iat_c))
        wheel_rpm = speed_kmh / KMH_PER_MS / cfg.tyre_circumference_m * _S_PER_MIN
        usable = [
            gear
            for gear in range(len(cfg.gear_ratios), 0, -1)
            if (gear == 1 or cfg.upshift_rpm <= wheel_rpm * self._overall_ratio(gear))
            and wheel_rpm * self._overall_ratio(gear) <= cfg.max_rpm
        ] or [len(cfg.gear_ratios)]
        candidates = []
        for gear in usable:
            rpm = self._clutch_rpm(wheel_rpm * self._overall_ratio(gear), brake_power_w) + jitter_rpm
            map_kpa = self._map_for_power_kpa(max(brake_power_w, 0.0), rpm, self._air_per_kpa_gps(rpm, iat_c))
            if 100.0 * map_kpa / cfg.baro_kpa <= cfg.downshift_load_pct:
                return gear, rpm, map_kpa
            candidates.append((map_kpa, gear, rpm))
        map_kpa, gear, rpm = min(candidates)
        return gear, rpm, map_kpa

    def _overall_ratio(self, gear: int) -> float:
        return self.config.gear_ratios[gear - 1] * self.config.final_drive_ratio

    def _clutch_rpm(self, geared_rpm: float, brake_power_w: float) -> float:
        """Below idle the clutch slips: the engine holds launch_rpm pulling away, idle otherwise."""
        cfg = self.config
        slipping_rpm = cfg.launch_rpm if brake_power_w > 0.0 else cfg.idle_rpm
        return geared_rpm if geared_rpm >= cfg.idle_rpm else max(geared_rpm, slipping_rpm)

    def _jitter_at(self, t_s: float) -> float:
        i = min(int(t_s), len(self._jitter) - 2)
        frac = t_s - i
        return self._jitter[i] + (self._jitter[i + 1] - self._jitter[i]) * frac

    def _iat_c(self, speed_kmh: float, coolant_c: float) -> float:
        """Intake air warms with the engine bay: up to +13 degC at standstill, +3 degC at speed, once warm."""
        cfg = self.config
        warm_fraction = (coolant_c - cfg.ambient_c) / (cfg.coolant_thermostat_c - cfg.ambient_c)
        return cfg.ambient_c + max(0.0, warm_fraction) * (3.0 + 10.0 * math.exp(-speed_kmh / 25.0))

    def _wheel_power_w(self, speed_kmh: float, accel_ms2: float) -> float:
        cfg = self.config
        return road_load_power_w(cfg.mass_kg, cfg.drag_area_m2, cfg.rolling_resistance, cfg.baro_kpa, cfg.ambient_c,
                                 speed_kmh, accel_ms2)

    def volumetric_efficiency_at(self, rpm: float) -> float:
        """True VE: peak at ve_peak_rpm, parabolic droop of ve_droop per ve_droop_span_rpm (floored at 2x)."""
        cfg = self.config
        x = (rpm - cfg.ve_peak_rpm) / cfg.ve_droop_span_rpm
        return cfg.volumetric_efficiency * (1.0 - cfg.ve_droop * min(x * x, 2.0))

    def _air_per_kpa_gps(self, rpm: float, iat_c: float) -> float:
        """Speed-density air mass flow per kPa of MAP: (rpm/120) * VE * V_d * M / (R * T)."""
        cfg = self.config
        intakes_per_s = rpm / _S_PER_MIN / _REVS_PER_INTAKE
        return (
            intakes_per_s * self.volumetric_efficiency_at(rpm) * cfg.displacement_l * AIR_MOLAR_MASS_G_PER_MOL
            / (GAS_CONSTANT_J_PER_MOL_K * (iat_c + ZERO_C_IN_K))
        )

    def _map_for_power_kpa(self, brake_power_w: float, rpm: float, air_per_kpa_gps: float) -> float:
        """MAP whose air (burnt stoichiometrically at the ISFC) gives brake + accessory + friction + pumping power.

        kPa * L = J, so a mean effective pressure times V_d per intake is work per cycle. Pumping work is
        (baro - MAP) * V_d, which makes the balance linear in MAP:
        MAP * air_per_kpa = c * (P_b + P_acc + (fmep + baro - MAP) * n), c = AFR * isfc / J_per_kWh, n = V_d * rpm/120.
        """
        cfg = self.config
        a, b, c2 = cfg.fmep_kpa_coeffs
        krpm = rpm / 1000.0
        fmep_kpa = a + b * krpm + c2 * krpm * krpm
        work_per_kpa_w = cfg.displacement_l * rpm / _S_PER_MIN / _REVS_PER_INTAKE
        isfc_g_per_kwh = cfg.isfc_g_per_kwh * (1.0 if brake_power_w > 0.0 else cfg.idle_spark_retard_isfc_factor)
        air_per_j_g = AFR_GASOLINE * isfc_g_per_kwh / _J_PER_KWH
        power_w = brake_power_w + cfg.accessory_power_w + (fmep_kpa + cfg.baro_kpa) * work_per_kpa_w
        map_kpa = air_per_j_g * power_w / (air_per_kpa_gps + air_per_j_g * work_per_kpa_w)
        return min(cfg.baro_kpa, max(cfg.map_closed_throttle_kpa, map_kpa))

    def _throttle_pct(self, map_kpa: float) -> float:
        """Throttle plate opening from MAP: 0 % closed, and opening grows faster than MAP towards WOT."""
        cfg = self.config
        x = (map_kpa - cfg.map_closed_throttle_kpa) / (cfg.baro_kpa - cfg.map_closed_throttle_kpa)
        return 100.0 * min(1.0, max(0.0, x)) ** 1.5


def _stationary_segments(speeds_kmh: tuple[float, ...]) -> tuple[list[float | None], list[bool]]:
    """Per 1 s segment: when the current standstill began (None while moving) and whether the car moved before."""
    stop_start_s: list[float | None] = []
    moved_before: list[bool] = []
    moved = False
    for i in range(len(speeds_kmh) - 1):
        stationary = speeds_kmh[i] == 0.0 and speeds_kmh[i + 1] == 0.0
        previous = stop_start_s[-1] if stop_start_s else None
        stop_start_s.append((previous if previous is not None else float(i)) if stationary else None)
        moved = moved or speeds_kmh[i] > 0.0
        moved_before.append(moved)
    return stop_start_s, moved_before
