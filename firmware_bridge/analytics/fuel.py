"""Fuel flow from whatever the car offers, best source first (DESIGN §1, REFERENCE.md fuel maths).

1. ``fuel_rate``: the ECU's own fuel rate (PID 0x5E, or a manufacturer frame), L/h.
2. ``maf``: mass air flow / (AFR · lambda) / gasoline density.
3. ``speed_density``: air mass estimated from MAP, IAT, rpm, displacement and volumetric efficiency (the kei
   case: a MAP sensor and no MAF).
4. ``battery``: an EV's pack power (energy, not fuel).
Every estimate a sample allows is computed, so a trip can report the best source that covered it. During a
deceleration fuel cut the injectors are shut: estimates from air flow read zero.
"""

from __future__ import annotations

from firmware_bridge import constants as k
from firmware_bridge.vehicles import VehicleProfile

FUEL_SOURCES = ("fuel_rate", "maf", "speed_density")  # best first
#: The quantities the estimates are made from (the fuel rate itself, air flow, manifold pressure).
FUEL_INPUTS = ("fuel_rate_lph", "maf_gps", "map_kpa")

#: J1979 PID 0x03 value: open loop due to engine load or deceleration fuel cut.
STATUS_OPEN_LOOP_LOAD_OR_CUT = 4
#: Above this calculated load (%), status 4 means power enrichment, not a fuel cut.
ENRICHMENT_MIN_LOAD_PCT = 70.0
#: Throttle (%) taken as high load when the ECU gives no calculated load.
HIGH_LOAD_THROTTLE_PCT = 60.0


def fuel_lph_from_maf(maf_gps: float, lambda_: float = 1.0) -> float:
    """L/h of gasoline for this air flow: MAF / (AFR·λ) g/s → L/h. (×0.3287 at λ 1.)"""
    return maf_gps / (k.AFR_GASOLINE * lambda_) * k.S_PER_H / k.GASOLINE_DENSITY_G_PER_L


def maf_gps_speed_density(rpm: float, map_kpa: float, iat_c: float, displacement_l: float,
                          volumetric_efficiency: float) -> float:
    """Air mass flow of a 4-stroke engine from the ideal gas law: one intake per cylinder per 2 revs."""
    air_density_g_per_l = map_kpa * k.AIR_MOLAR_MASS_G_PER_MOL / (k.GAS_CONSTANT_J_PER_MOL_K * (iat_c + k.ZERO_C_IN_K))
    return rpm / 120.0 * volumetric_efficiency * displacement_l * air_density_g_per_l


class FuelEstimator:
    """Turns quantity samples into (source, fuel rate L/h) estimates using the latest vehicle values."""

    def __init__(self, profile: VehicleProfile) -> None:
        self.profile = profile

    def in_fuel_cut(self, values: dict[str, float]) -> bool:
        """Injectors shut: the car says so, or the ECU reports status 4 while the load is low."""
        if "fuel_cut" in values:
            return values["fuel_cut"] >= 0.5
        if values.get("fuel_system_status") != STATUS_OPEN_LOOP_LOAD_OR_CUT:
            return False
        return not self._high_load(values)

    @staticmethod
    def _high_load(values: dict[str, float]) -> bool:
        if "engine_load_pct" in values:
            return values["engine_load_pct"] >= ENRICHMENT_MIN_LOAD_PCT
        return values.get("throttle_pct", 0.0) >= HIGH_LOAD_THROTTLE_PCT

    def lambda_(self, values: dict[str, float]) -> float:
        if "lambda" in values and values["lambda"] > 0:
            return values["lambda"]
        if values.get("fuel_system_status") == STATUS_OPEN_LOOP_LOAD_OR_CUT and self._high_load(values):
            return k.ENRICHMENT_LAMBDA
        return 1.0

    def estimates(self, quantity: str, value: float, values: dict[str, float]) -> list[tuple[str, float]]:
        if quantity == "fuel_rate_lph":
            return [("fuel_rate", max(value, 0.0))]
        if quantity == "maf_gps":
            cut = self.in_fuel_cut(values) or values.get("engine_rpm", 1.0) <= 0
            return [("maf", 0.0 if cut else fuel_lph_from_maf(value, self.lambda_(values)))]
        if quantity == "map_kpa" and "engine_rpm" in values and self.profile.displacement_l:
            rpm = values["engine_rpm"]
            if rpm <= 0 or self.in_fuel_cut(values):
                return [("speed_density", 0.0)]
            iat_c = values.get("iat_c", values.get("ambient_c", k.DEFAULT_IAT_C))
            maf = maf_gps_speed_density(rpm, value, iat_c, self.profile.displacement_l,
                                        self.profile.volumetric_efficiency)
            return [("speed_density", fuel_lph_from_maf(maf, self.lambda_(values)))]
        return []
