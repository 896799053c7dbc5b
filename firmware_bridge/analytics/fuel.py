"""Fuel flow from whatever the car offers, best source first (SAE J1979 PIDs; the ideal gas law).

1. ``fuel_rate``: the ECU's own fuel rate (PID 0x5E, or a manufacturer frame), L/h.
2. ``maf``: mass air flow / (AFR · lambda) / gasoline density.
3. ``speed_density``: air mass estimated from MAP, IAT, rpm, displacement and volumetric efficiency (the kei
   case: a MAP sensor and no MAF).
4. ``battery``: an EV's pack power (energy, not fuel).
Every estimate the samples allow is computed (as arrays), so a trip can report the best source that covered it. During a
deceleration fuel cut the injectors are shut: estimates from air flow read zero.
"""

from __future__ import annotations

import numpy as np

from firmware_bridge import constants as k
from firmware_bridge.records import SampleBlock
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


def fuel_lph_from_maf(maf_gps, lambda_=1.0):
    """L/h of gasoline for this air flow (numbers or arrays): MAF / (AFR·λ) g/s → L/h. (×0.3287 at λ 1.)"""
    return maf_gps / (k.AFR_GASOLINE * lambda_) * k.S_PER_H / k.GASOLINE_DENSITY_G_PER_L


def maf_gps_speed_density(rpm, map_kpa, iat_c, displacement_l: float, volumetric_efficiency: float):
    """Air mass flow of a 4-stroke engine from the ideal gas law: one intake per cylinder per 2 revs."""
    air_density_g_per_l = map_kpa * k.AIR_MOLAR_MASS_G_PER_MOL / (k.GAS_CONSTANT_J_PER_MOL_K * (iat_c + k.ZERO_C_IN_K))
    return rpm / 120.0 * volumetric_efficiency * displacement_l * air_density_g_per_l


class FuelEstimator:
    """Turns the fuel-input samples of a segment into (source, positions, fuel rate L/h) estimates, using the
    values the car gave last at each sample."""

    def __init__(self, profile: VehicleProfile) -> None:
        self.profile = profile

    def estimates(self, samples: SampleBlock, lo: int, hi: int):
        """(source, positions, L/h) for every fuel source that samples[lo:hi] give an estimate of."""
        if len(rows := samples.of("fuel_rate_lph", lo, hi)):
            yield "fuel_rate", rows, np.maximum(samples.value[rows], 0.0)
        if len(rows := samples.of("maf_gps", lo, hi)):
            rpm, _ = samples.latest("engine_rpm", rows, default=1.0)
            cut, lambda_ = self._injection(samples, rows)
            yield "maf", rows, np.where(cut | (rpm <= 0), 0.0, fuel_lph_from_maf(samples.value[rows], lambda_))
        if len(rows := samples.of("map_kpa", lo, hi)) and self.profile.displacement_l:
            rpm, has_rpm = samples.latest("engine_rpm", rows)
            rows, rpm = rows[has_rpm], rpm[has_rpm]
            if len(rows):
                ambient_c, _ = samples.latest("ambient_c", rows, default=k.DEFAULT_IAT_C)
                iat_c, has_iat = samples.latest("iat_c", rows)
                cut, lambda_ = self._injection(samples, rows)
                air_gps = maf_gps_speed_density(rpm, samples.value[rows], np.where(has_iat, iat_c, ambient_c),
                                                self.profile.displacement_l, self.profile.volumetric_efficiency)
                yield "speed_density", rows, np.where((rpm <= 0) | cut, 0.0, fuel_lph_from_maf(air_gps, lambda_))

    @staticmethod
    def _injection(samples: SampleBlock, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(injectors shut, lambda) at each sample. Shut: the car says so, or the ECU reports status 4 while
        the load is low; status 4 at high load is power enrichment."""
        said_cut, has_cut = samples.latest("fuel_cut", rows)
        status, _ = samples.latest("fuel_system_status", rows)
        load, has_load = samples.latest("engine_load_pct", rows)
        throttle, _ = samples.latest("throttle_pct", rows, default=0.0)
        measured, _ = samples.latest("lambda", rows, default=0.0)
        high_load = np.where(has_load, load >= ENRICHMENT_MIN_LOAD_PCT, throttle >= HIGH_LOAD_THROTTLE_PCT)
        open_loop = status == STATUS_OPEN_LOOP_LOAD_OR_CUT
        cut = np.where(has_cut, said_cut >= 0.5, open_loop & ~high_load)
        lambda_ = np.where(measured > 0, measured, np.where(open_loop & high_load, k.ENRICHMENT_LAMBDA, 1.0))
        return cut, lambda_
