"""Real cars' recordings (made by other people): what the agent reads on buses it was never built against.

Each test skips where the recordings are absent. The ground truth is the cars' own: the Civic's 10 m rolling
distance counter in ENGINE_DATA, and what each recording is known to show (a parked car, a car with no DBC).
"""

from __future__ import annotations

import json

import can
import pytest

from firmware_bridge.pipeline import Pipeline, PipelineOptions
from firmware_bridge.vehicles import available_vehicles, load_vehicle

from conftest import real_log, run_cli

CAN_LOGS = ["civic8th_vsslog.log", "civic8th_40mph.trc", "civic19typer_turnonanddrive.log",
            "durango_tracncontrl.log", "evox_cycletheacamilliontimes.log", "yaris09_accellog.log",
            "yaris09_engineonaconoffstockecu.trc", "imiev_cmu04correctreading.trc", "kona2021_dcan_car_scanner_elm327.log"]


def stats(log, *args) -> dict:
    result = run_cli("stats", log, *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def counter_distance_km(log) -> float:
    """Distance by the car's own ENGINE_DATA.ODOMETER, a 10 m counter that wraps at 2560 m."""
    db = Pipeline(PipelineOptions(vehicle="honda-civic")).decoder.db
    message = db.get_message_by_name("ENGINE_DATA")
    previous, metres = None, 0
    for msg in can.LogReader(str(log)):
        if msg.arbitration_id == message.frame_id:
            count = message.decode(bytes(msg.data))["ODOMETER"]
            metres += 0 if previous is None else (count - previous) % 2560
            previous = count
    return metres / 1000


@pytest.mark.parametrize("name", CAN_LOGS)
def test_no_real_frame_decodes_as_the_simulator(name):
    log = real_log(name)
    for car in sorted(set(available_vehicles()) - {"kei-sim"}):
        pipeline = Pipeline(PipelineOptions(vehicle=car))
        decoded = []
        pipeline.frame_listeners.append(lambda frame: decoded.append(frame.message))
        pipeline.feed_messages(can.LogReader(str(log)))
        assert not [m for m in decoded if m.startswith("SIM_")], car


def test_type_r_drive_is_one_trip_with_the_honda_folder():
    [trip] = stats(real_log("civic19typer_turnonanddrive.log"), "--vehicle", "honda-civic-type-r")["trips"]
    assert trip["duration_s"] == pytest.approx(65.4, abs=1.0)
    assert trip["max_speed_kmh"] == pytest.approx(8.9, abs=0.1)
    assert trip["distance_km"] == pytest.approx(0.030, abs=0.010)  # the counter says 30 m in 10 m steps


@pytest.mark.parametrize("name", ["civic8th_vsslog.log", "civic8th_40mph.trc"])
def test_civic_distance_matches_its_own_counter(tmp_path, name):
    log = real_log(name)
    config = tmp_path / "short-trips.toml"
    config.write_text("[analytics]\nmin_trip_s = 10\n")  # these recordings are 20-32 s long
    [trip] = stats(log, "--vehicle", "honda-civic", "--config", config)["trips"]
    truth_km = counter_distance_km(log)
    assert truth_km > 0.15
    assert trip["distance_km"] == pytest.approx(truth_km, rel=0.03)


def test_parked_evo_x_gives_no_trip():
    result = stats(real_log("evox_cycletheacamilliontimes.log"))
    assert result["trips"] == [] and result["frames"]["decoded"] == 0


def test_durango_gives_no_engine_figures():
    """No public DBC for this car: nothing but OBD-II may decode, so no rpm, temperature or fuel appear."""
    log = real_log("durango_tracncontrl.log")
    pipeline = Pipeline(PipelineOptions())
    pipeline.feed_messages(can.LogReader(str(log)))
    pipeline.finish()
    assert not {"engine_rpm", "iat_c", "coolant_c", "fuel_rate_lph"} & set(pipeline.state.values)
    assert pipeline.trips == []


def test_each_honda_folder_says_what_it_was_checked_on():
    for car in ("honda-civic", "honda-civic-type-r"):
        readme = load_vehicle(car).folder + "/README.md"
        text = open(readme, encoding="utf-8").read()
        assert "checked on" in text.lower() and ".log" in text
