"""Fuel formulas against worked figures (MAF and speed-density methods, CO2 per litre)."""

import pytest

from firmware_bridge import constants as k
from firmware_bridge.analytics.fuel import FuelEstimator, fuel_lph_from_maf, maf_gps_speed_density
from firmware_bridge.records import DecodedFrame
from firmware_bridge.vehicles import load_vehicle

from conftest import T0
from samples import hand_state


def test_maf_to_litres_per_hour():
    assert fuel_lph_from_maf(1.0) == pytest.approx(0.3287, abs=1e-4)
    assert fuel_lph_from_maf(10.0, lambda_=0.88) == pytest.approx(3.287 / 0.88, rel=1e-3)


def test_speed_density_worked_example():
    # 0.658 L, 2000 rpm, 50 kPa, 30 °C, VE 0.85 -> 5.36 g/s -> 1.76 L/h -> 22.7 km/L at 40 km/h
    maf = maf_gps_speed_density(2000, 50, 30, 0.658, 0.85)
    assert maf == pytest.approx(5.36, abs=0.01)
    assert fuel_lph_from_maf(maf) == pytest.approx(1.76, abs=0.01)
    assert 40 / fuel_lph_from_maf(maf) == pytest.approx(22.7, abs=0.1)


def test_economy_conversions_and_co2():
    assert k.KM_PER_L_TO_MPG_US == pytest.approx(2.352146, abs=1e-6)
    assert k.KM_PER_L_TO_MPG_UK == pytest.approx(2.824809, abs=1e-6)
    assert k.CO2_KG_PER_L_GASOLINE == 2.32


class Estimates:
    """The estimator's answer for one input sample, given the values the car gave before it (same frame)."""

    def __init__(self) -> None:
        self.estimator = FuelEstimator(load_vehicle("generic-kei"))

    def estimates(self, quantity: str, value: float, values: dict[str, float]) -> list[tuple[str, float]]:
        frame = DecodedFrame(T0, 0, "HAND", {**values, quantity: value})
        block = hand_state().accept_frames([frame])
        mine = block.of(quantity)
        return [(source, float(rates[list(at).index(mine[0])]))
                for source, at, rates in self.estimator.estimates(block, 0, len(block)) if mine[0] in at]


@pytest.fixture
def estimator():
    return Estimates()


def test_fuel_cut_reads_zero(estimator):
    coasting = {"engine_rpm": 2500.0, "fuel_system_status": 4.0, "engine_load_pct": 5.0, "iat_c": 30.0}
    assert estimator.estimates("map_kpa", 25.0, coasting) == [("speed_density", 0.0)]
    assert estimator.estimates("maf_gps", 3.0, coasting) == [("maf", 0.0)]


def test_status_four_at_high_load_is_enrichment(estimator):
    full = {"engine_rpm": 5000.0, "fuel_system_status": 4.0, "engine_load_pct": 95.0}
    [(source, rate)] = estimator.estimates("maf_gps", 30.0, full)
    assert source == "maf" and rate == pytest.approx(fuel_lph_from_maf(30.0) / k.ENRICHMENT_LAMBDA)
    [(_, rate)] = estimator.estimates("maf_gps", 30.0, {**full, "lambda": 0.8})
    assert rate == pytest.approx(fuel_lph_from_maf(30.0) / 0.8)


def test_idle_stop_burns_nothing(estimator):
    assert estimator.estimates("map_kpa", 100.0, {"engine_rpm": 0.0}) == [("speed_density", 0.0)]


def test_closed_loop_uses_profile(estimator):
    values = {"engine_rpm": 2000.0, "fuel_system_status": 2.0, "iat_c": 30.0}
    [(source, rate)] = estimator.estimates("map_kpa", 50.0, values)
    assert source == "speed_density" and rate == pytest.approx(1.76, abs=0.01)
    assert estimator.estimates("fuel_rate_lph", 1.25, values) == [("fuel_rate", 1.25)]
