"""The i-MiEV car's DBC against the published i-MiEV facts (OVMS, KommyKT, bonybrown): test frames, formulas, routing."""

import json

import can
import cantools
import pytest

from firmware_bridge.sim.ev import IMIEV_DBC_PATH
from firmware_bridge.pipeline import Pipeline, PipelineOptions
from firmware_bridge.state.vehicle import load_signal_map
from firmware_bridge.vehicles import load_vehicle

from conftest import T0, run_cli, write_log



def frame(frame_id: int, hex_data: str, t: float = T0) -> can.Message:
    return can.Message(timestamp=t, arbitration_id=frame_id, is_extended_id=False, data=bytes.fromhex(hex_data))


@pytest.fixture(scope="module")
def db():
    return cantools.database.load_file(str(IMIEV_DBC_PATH))


def test_published_test_frames_decode_to_published_values(tmp_path):
    """0x412 FE 00 01 72 27 -> 0 km/h, 94,759 km; 0x374 B0 B3 -> SoC 84.5 % by (D1 - 10) / 2."""
    log = tmp_path / "published.log"
    write_log(log, [frame(0x412, "FE00017227000000"), frame(0x374, "B0B3000000000000", T0 + 0.1)])
    result = run_cli("decode", log, "--dbc", IMIEV_DBC_PATH)
    assert result.returncode == 0, result.stderr
    cluster, soc = [json.loads(line) for line in result.stdout.splitlines()]
    assert cluster["message"] == "IMIEV_CLUSTER" and cluster["signals"] == {"speed_kmh": 0, "odometer_km": 94759}
    assert soc["message"] == "IMIEV_SOC" and soc["signals"] == {"soc_pct": 84.5}


@pytest.mark.parametrize(("frame_id", "hex_data", "expected"), [
    (0x101, "0400000000000000", {"key_on": 1}),
    (0x101, "0000000000000000", {"key_on": 0}),
    (0x210, "0000FF0000000000", {"accel_pedal_pct": 100.0}),
    (0x215, "1900000000000000", {"abs_speed_kmh": 50.0}),  # 0x1900 / 128
    (0x298, "0000004600002AF8", {"motor_temp_c": 30, "motor_rpm": 1000}),  # 0x46 - 40; 0x2AF8 - 10000
    (0x346, "0000000000000064", {"range_km": 100}),
    (0x418, "4400000000000000", {"shift_lever": 0x44}),  # D
])
def test_formulas(db, frame_id, hex_data, expected):
    decoded = db.decode_message(frame_id, bytes.fromhex(hex_data), decode_choices=False)
    assert decoded == pytest.approx(expected)


def test_battery_frame_sign_and_scale(db):
    # cell max (0xB4 + 210) / 100 = 3.90 V, min 3.88 V; current 0x58F0 = 22768 -> -100.00 A (discharge);
    # voltage 0x0CE4 = 3300 -> 330.0 V
    decoded = db.decode_message(0x373, bytes.fromhex("B4B258F00CE40000"))
    assert decoded == pytest.approx({"cell_v_max": 3.90, "cell_v_min": 3.88, "pack_current_a": -100.0,
                                     "pack_voltage_v": 330.0})


def test_uncertain_signals_are_marked(db):
    comments = {(m.name, s.name): s.comment or "" for m in db.messages for s in m.signals}
    for key in (("IMIEV_ABS_SPEED", "abs_speed_kmh"), ("IMIEV_SOC", "soc_pct"), ("IMIEV_KEY", "key_on")):
        assert "UNCERTAIN" in comments[key], key
    assert "D1 * 0.5 - 10" in comments[("IMIEV_SOC", "soc_pct")]  # the other source's formula, named
    assert all(m.cycle_time for m in db.messages)  # the published periods


def test_profile_loads_the_dbc_and_the_signal_map_routes_it():
    pipeline = Pipeline(PipelineOptions(vehicle="mitsubishi-i-miev"))
    pipeline.feed_messages([frame(0x101, "0400000000000000"), frame(0x412, "FE00017227000000", T0 + 0.01),
                            frame(0x374, "B0B3000000000000", T0 + 0.02), frame(0x373, "B4B258F00CE40000", T0 + 0.03),
                            frame(0x298, "0000004600002AF8", T0 + 0.04), frame(0x346, "0000000000000064", T0 + 0.05)])
    assert pipeline.state.values == pytest.approx({
        "ignition": 1.0, "speed_kmh": 0.0, "odometer_km": 94759.0, "soc_pct": 84.5, "battery_v": 330.0,
        "battery_a": -100.0, "cell_v_max": 3.90, "cell_v_min": 3.88, "motor_rpm": 1000.0, "motor_temp_c": 30.0,
        "range_km": 100.0})
    # the generic profile does not load it: an unknown car's 0x412 is not read as an i-MiEV odometer
    assert 0x412 not in {m.frame_id for m in Pipeline().decoder.db.messages}


def test_every_imiev_source_in_the_signal_map_exists_in_the_dbc(db):
    signals = {f"{m.name}.{s.name}" for m in db.messages for s in m.signals}
    car_routes = load_vehicle("mitsubishi-i-miev").signal_map
    routed = {source for sources in load_signal_map(car_map=car_routes).values() for source in sources
              if source.startswith("IMIEV_")}
    assert not any(s.startswith("IMIEV_") for sources in load_signal_map().values() for s in sources)
    assert routed and routed <= signals
    assert signals - routed == {"IMIEV_ABS_SPEED.abs_speed_kmh"}  # one source only: for a user map to promote
