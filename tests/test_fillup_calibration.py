"""Fill-up calibration end to end: a MAP-only petrol car whose true volumetric efficiency is 15 % above the
profile's, driven as recorded logs through `replay`, with full and partial fill-ups recorded by `fillup`."""

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from firmware_bridge.calibration.fit import MIN_COVERAGE, fit, intervals
from firmware_bridge.calibration.ledger import Fillup, TripRecord
from firmware_bridge.sim import CarConfig, write_log

from conftest import T0, run_cli

PROFILE_VE = 0.85  # generic-kei
TRUE_VE = PROFILE_VE * 1.15
DAY_S = 86400.0
#: Pumped litres are the fuel burnt since the last full tank, to the pump's 0.01 L, plus a little tank-level
#: difference at the nozzle's click (a real pump never refills to exactly the same level).
CLICK_L = (0.0, +0.02, -0.02)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class Drive:
    log: str
    fuel_l: float
    trip: dict  # as the agent reported it when the drive was replayed


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """F1 (full) | wltc, wltc-jp | F2 (full) | wltc, partial fill, wltc-jp | F3 (full) | wltc."""
    tmp = tmp_path_factory.mktemp("calibration")
    config = tmp / "agent.toml"
    config.write_text(f'[calibration]\nledger = "{tmp / "ledger.db"}"\n')
    odometer_km, t, burnt_l, fills = 20000.0, T0, 0.0, 0
    drives, outputs = [], []

    def fillup(litres: float, partial: bool = False):
        result = run_cli("fillup", "--litres", f"{litres:.2f}", "--odometer", str(math.floor(odometer_km)),
                         "--time", iso(t - 600), "--price", "172", *(["--partial"] if partial else []),
                         "--config", config)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)

    fillup(25.0)
    for i, cycle in enumerate(("wltc", "wltc-jp", "wltc", "wltc-jp", "wltc")):
        log = tmp / f"drive{i}.log"
        truth = write_log(log, cycle, CarConfig(volumetric_efficiency=TRUE_VE, odometer_start_km=odometer_km),
                          broadcast=False, start_time=t)  # MAP only, OBD-II: speed-density
        replay = run_cli("replay", log, "--config", config)
        assert replay.returncode == 0, replay.stderr
        [trip] = json.loads(run_cli("stats", log, "--config", config, "--format", "json").stdout)["trips"]
        drives.append(Drive(str(log), truth.fuel_l, trip))
        odometer_km += truth.distance_km
        burnt_l += truth.fuel_l
        t += DAY_S
        if i == 2:  # a partial top-up mid-interval: its litres count towards the next full tank's interval
            fillup(0.5, partial=True)
            burnt_l -= 0.5
        if i in (1, 3):
            fills += 1
            fillup(round(burnt_l + CLICK_L[fills], 2))
            burnt_l = 0.0
    return {"tmp": tmp, "config": config, "drives": drives, "outputs": outputs}


def test_calibration_brings_speed_density_fuel_to_the_pump(scenario):
    before, after = scenario["drives"][0], scenario["drives"][-1]
    before_error = before.trip["fuel_used_l"] / before.fuel_l - 1
    after_error = after.trip["fuel_used_l"] / after.fuel_l - 1
    print(f"\ntrip fuel vs truth: before calibration {100 * before_error:+.1f} %, after {100 * after_error:+.2f} %")
    assert before.trip["fuel_source"] == "speed_density" and before.trip["fuel_correction"] is None
    assert -0.17 < before_error < -0.10  # the estimate assumes a VE 15 % too low
    assert after.trip["fuel_correction"] == pytest.approx(1.15, rel=0.03)
    assert abs(after_error) < 0.03
    # the per-domain figures and km/L use the corrected fuel too
    assert sum(d["fuel_l"] for d in after.trip["speed_domains"].values()) == pytest.approx(after.trip["fuel_used_l"])
    # one interval is not enough (min_intervals = 2): drives 3 and 4 were still uncalibrated
    assert [d.trip["fuel_correction"] for d in scenario["drives"]] == [None] * 4 + [after.trip["fuel_correction"]]


def test_calibration_report(scenario):
    result = run_cli("calibration", "--config", scenario["config"], "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [f["partial"] for f in report["fillups"]] == [False, False, True, False]
    first, second = report["intervals"]
    assert (first["trips"], second["trips"]) == (2, 2) and first["usable"] and second["usable"]
    assert second["pumped_l"] == pytest.approx(0.5 + round(sum(d.fuel_l for d in scenario["drives"][2:4]) - 0.5
                                                           + CLICK_L[2], 2))
    for interval in (first, second):
        assert interval["pumped_km_per_l"] < interval["estimated_km_per_l"]  # the uncorrected estimate flatters
        assert interval["coverage"] == pytest.approx(1.0, abs=0.03)  # odometers read to the whole km
    sd = report["corrections"]["speed_density"]
    assert sd["intervals"] == 2 and sd["spread"] > 0
    assert sd["factor"] == pytest.approx(1.15, rel=0.03)
    assert sd["volumetric_efficiency"] == pytest.approx(PROFILE_VE * sd["factor"])
    assert sd["volumetric_efficiency"] == pytest.approx(TRUE_VE, rel=0.03)
    table = run_cli("calibration", "--config", scenario["config"]).stdout
    assert "speed_density: factor" in table and "from 2 full-tank intervals" in table
    assert "calibration: speed_density: factor" in scenario["outputs"][-1]  # the third full tank says so


def test_fillup_and_calibration_points_reach_influxdb(scenario, influx, influx_db, tmp_path):
    """`fillup` writes at once; a replay (as the agent on start) re-sends every fill-up and interval."""
    last = scenario["drives"][-1]
    odometer = math.floor(json.loads(run_cli("calibration", "--config", scenario["config"], "--format", "json")
                                     .stdout)["fillups"][-1]["odometer_km"] + last.trip["distance_km"])
    result = run_cli("fillup", "--litres", f"{last.fuel_l:.2f}", "--odometer", str(odometer), "--time",
                     iso(T0 + 6 * DAY_S), "--config", scenario["config"], "--influx-url", influx.url,
                     "--influx-api", "v1", "--influx-bucket", influx_db)
    assert result.returncode == 0, result.stderr
    assert "points sent to InfluxDB v1" in result.stdout
    [fill] = influx.rows("SELECT * FROM fillup", influx_db)
    assert fill["litres"] == round(last.fuel_l, 2) and fill["odometer_km"] == odometer and fill["vehicle"] == "kei"
    rows = influx.rows("SELECT * FROM calibration", influx_db)
    assert len(rows) == 3 and {r["fuel_source"] for r in rows} == {"speed_density"}
    for row in rows:
        assert row["pumped_km_per_l"] > 0 and row["estimated_km_per_l"] > 0 and row["interval_factor"] > 1.1
    assert "factor" not in rows[0] or rows[0]["factor"] is None  # one interval: not fitted yet
    assert rows[-1]["factor"] == pytest.approx(1.15, rel=0.03) and rows[-1]["intervals"] == 3
    spool = tmp_path / "agent.toml"
    spool.write_text(scenario["config"].read_text() + f'[spool]\npath = "{tmp_path / "spool.db"}"\n')
    replay = run_cli("replay", last.log, "--config", spool, "--influx-url", influx.url, "--influx-api", "v1",
                     "--influx-bucket", influx_db)
    assert replay.returncode == 0, replay.stderr
    assert len(influx.rows("SELECT * FROM fillup", influx_db)) == 5
    [trip] = influx.rows("SELECT * FROM trip", influx_db)
    assert trip["fuel_correction"] == pytest.approx(rows[-1]["factor"])


@pytest.mark.parametrize(("args", "message"), [
    (("--litres", "-3", "--odometer", "100"), "--litres: -3.0 is outside (0, 1000]"),
    (("--litres", "20", "--odometer", "100", "--time", "yesterday"), "--time: expected an ISO 8601 time"),
    (("--litres", "20", "--odometer", "90", "--time", "2026-04-03T00:00"), "odometer 90 km is below the 100 km"),
])
def test_bad_fillups_are_one_line_errors(tmp_path, args, message):
    assert run_cli("fillup", "--litres", "20", "--odometer", "100", "--time", "2026-04-02T00:00",
                   state_home=tmp_path).returncode == 0
    result = run_cli("fillup", *args, state_home=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line
    assert (tmp_path / "firmware-bridge" / "ledger.db").is_file()  # the state directory, next to the spool


def fill(day: int, odometer_km: float, litres: float, partial: bool = False) -> Fillup:
    return Fillup(T0 + day * DAY_S, odometer_km, litres, None, partial)


def trip(day: int, km: float, fuel_l: float, odometer_start_km: float | None, correction: float = 1.0):
    odometer_end = None if odometer_start_km is None else odometer_start_km + km
    return TripRecord(T0 + day * DAY_S + 60, T0 + day * DAY_S + 3600, odometer_start_km, odometer_end, km,
                      fuel_l * correction, "maf", correction)


def test_fit_partial_fills_coverage_and_placement():
    fillups = [fill(0, 1000, 30), fill(2, 1200, 5, partial=True), fill(4, 1400, 15), fill(8, 1800, 20)]
    trips = [trip(1, 200, 9.0, 1000), trip(3, 200, 9.0, None, correction=1.2),  # no odometer: placed by time
             trip(5, 100, 4.0, 1400)]  # the next interval has one trip for 400 km: too little coverage
    first, second = intervals(fillups, trips)
    assert first.pumped_l == 20 and first.estimated_l == pytest.approx(18.0) and first.coverage == 1.0
    assert first.factor == pytest.approx(20 / 18)
    assert second.coverage == 0.25 < MIN_COVERAGE and not second.usable
    [correction] = fit([first, second], min_intervals=1).values()
    assert correction.fuel_source == "maf" and correction.intervals == 1 and correction.spread is None
    assert fit([first, second], min_intervals=2) == {}
    assert correction.volumetric_efficiency(0.85) is None  # a MAF scale, not a VE
