"""Tests for the kei-car simulator: cycles, physics sanity, OBD-II encoding, broadcast, live bus and logs."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

import can
import cantools
import pytest

from firmware_bridge.clock import ScaledClock, SimClock
from firmware_bridge.sim import (
    CYCLE_NAMES,
    PID_SETS,
    BroadcastSchedule,
    CarConfig,
    Cycle,
    KeiCar,
    ObdResponder,
    SimulatedCar,
    SIM_DBC_PATH,
    encode_response,
    generate_frames,
    load_cycle,
    write_log,
)
from firmware_bridge.sim.car import FUEL_STATUS_CLOSED_LOOP, FUEL_STATUS_OPEN_LOOP_LOAD_OR_CUT
from firmware_bridge.sim.obd import obd_request
from firmware_bridge.sim.runner import OBD_RESPONSE_DELAY_S

T0 = 1775034000.0
SHORT_CYCLE = Cycle("short", (0.0, 0.0, 10.0, 25.0, 30.0, 20.0, 5.0, 0.0, 0.0))


def drive(config: CarConfig, cycle: Cycle, poll_hz: float = 10.0):
    """States at poll_hz over the cycle plus one second past its end, and the car."""
    car = KeiCar(config, cycle)
    n = int((cycle.duration_s + 1.0) * poll_hz)
    return [car.advance_to(k / poll_hz) for k in range(n + 1)], car


@pytest.fixture(scope="module")
def wltc_drive():
    return drive(CarConfig(), load_cycle("wltc"))


# --- cycles ----------------------------------------------------------------------------------------------


def test_wltc_totals():
    cycle = load_cycle("wltc")
    assert cycle.duration_s == 1800
    assert sum(cycle.speeds_kmh) == pytest.approx(83758.6, abs=1e-6)
    assert cycle.distance_km == pytest.approx(23.266, abs=0.001)
    assert max(cycle.speeds_kmh) == 131.3


def test_wltc_jp_is_low_medium_high():
    cycle = load_cycle("wltc-jp")
    assert cycle.duration_s == 1477
    assert cycle.distance_km == pytest.approx(15.01, abs=0.01)
    assert cycle.speeds_kmh == load_cycle("wltc").speeds_kmh[:1478]


def test_cycle_interpolation_and_names():
    assert SHORT_CYCLE.speed_kmh_at(2.5) == pytest.approx(17.5)
    assert SHORT_CYCLE.speed_kmh_at(-1.0) == 0.0
    assert SHORT_CYCLE.speed_kmh_at(99.0) == 0.0
    assert set(CYCLE_NAMES) == {"wltc", "wltc-jp"}
    with pytest.raises(ValueError, match="wltc-jp"):
        load_cycle("jc08")


# --- physics ---------------------------------------------------------------------------------------------


def test_truth_distance_is_exact_and_economy_plausible(wltc_drive):
    _, car = wltc_drive
    truth = car.truth
    assert truth.distance_km == pytest.approx(load_cycle("wltc").distance_km, rel=1e-12)
    assert truth.duration_s == 1800
    assert 15.0 < truth.distance_km / truth.fuel_l < 26.0
    assert 0.0 < truth.idle_fuel_l < 0.05 * truth.fuel_l


def test_wltc_jp_economy_plausible():
    _, car = drive(CarConfig(), load_cycle("wltc-jp"), poll_hz=2.0)
    assert 15.0 < car.truth.distance_km / car.truth.fuel_l < 26.0


def test_idle_fuel_rate(wltc_drive):
    states, _ = wltc_drive
    idle = [s for s in states if s.ignition and s.speed_kmh == 0 and s.fuel_system_status == FUEL_STATUS_CLOSED_LOOP]
    assert len(idle) > 1000
    assert all(0.3 <= s.fuel_rate_lph <= 0.7 for s in idle)
    assert all(24.0 <= s.map_kpa <= 34.0 for s in idle)


def test_decel_fuel_cut(wltc_drive):
    states, _ = wltc_drive
    cut = [s for s in states if s.fuel_cut]
    assert len(cut) > 500
    for s in cut:
        assert s.fuel_rate_lph == 0.0 and s.accel_ms2 < 0 and s.speed_kmh > 10.0
        assert s.fuel_system_status == FUEL_STATUS_OPEN_LOOP_LOAD_OR_CUT and s.throttle_pct == 0.0
        assert s.maf_gps > 0.0  # air still flows through a motored engine


def test_sensor_ranges(wltc_drive):
    states, _ = wltc_drive
    config = CarConfig()
    running = [s for s in states if s.engine_running]
    assert all(config.idle_rpm - 20 <= s.engine_rpm <= config.max_rpm + 20 for s in running)
    assert all(20.0 <= s.map_kpa <= 102.0 for s in running)
    assert all(0.0 <= s.throttle_pct <= 100.0 and 0.0 <= s.engine_load_pct <= 100.0 for s in running)
    cruise_80 = [s for s in running if abs(s.speed_kmh - 80) < 2 and abs(s.accel_ms2) < 0.15]
    assert cruise_80 and all(2000 <= s.engine_rpm <= 3500 for s in cruise_80)
    assert states[0].coolant_c == config.ambient_c
    assert states[-20].coolant_c == pytest.approx(88.0, abs=3.0)


def test_ignition_off_after_cycle(wltc_drive):
    states, car = wltc_drive
    last = states[-1]
    assert last.t_s > 1800
    assert not last.ignition and last.engine_rpm == 0 and last.speed_kmh == 0 and last.battery_v == 12.4
    assert car.truth.duration_s == 1800


def test_deterministic_and_independent_of_query_times(wltc_drive):
    states, car = wltc_drive
    again_states, again = drive(CarConfig(), load_cycle("wltc"))
    assert again_states == states
    sparse = KeiCar(CarConfig(), load_cycle("wltc"))
    for t_s in (0.37, 12.0, 333.333, 1799.99, 1801.0):
        sparse.advance_to(t_s)
    assert sparse.truth == car.truth


def test_idle_stop_saves_idle_fuel():
    states, car = drive(CarConfig(idle_stop=True), load_cycle("wltc-jp"), poll_hz=2.0)
    stopped = [s for s in states if s.ignition and not s.engine_running]
    assert stopped and all(s.engine_rpm == 0 and s.fuel_rate_lph == 0 and s.speed_kmh == 0 for s in stopped)
    assert states[0].engine_running  # no idle stop before the car has moved
    _, plain = drive(CarConfig(), load_cycle("wltc-jp"), poll_hz=2.0)
    assert car.truth.idle_fuel_l < 0.3 * plain.truth.idle_fuel_l


# --- OBD-II ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warm_state():
    car = KeiCar(CarConfig(), load_cycle("wltc"))
    return car.advance_to(1000.0)


def supported_from_bitmaps(state, pid_set: str) -> set[int]:
    """Walk the support bitmaps as a scan tool does (J1979: MSB of A = PID base+1)."""
    advertised, base = {0x00}, 0x00
    while True:
        frame = encode_response(base, state, pid_set)
        assert frame is not None and frame[:3] == bytes((6, 0x41, base))
        bitmap = int.from_bytes(frame[3:7], "big")
        advertised |= {base + i for i in range(1, 33) if bitmap & (1 << (32 - i))}
        if base + 0x20 not in advertised:
            return advertised
        base += 0x20


@pytest.mark.parametrize("pid_set", ["map", "maf", "fuel_rate"])
def test_bitmaps_list_exactly_the_pid_set(warm_state, pid_set):
    assert supported_from_bitmaps(warm_state, pid_set) == set(PID_SETS[pid_set])


def test_pid_sets():
    assert 0x10 not in PID_SETS["map"] and 0x5E not in PID_SETS["map"] and 0x0B in PID_SETS["map"]
    assert 0x10 in PID_SETS["maf"] and 0x5E not in PID_SETS["maf"]
    assert {0x10, 0x44, 0x5E} <= PID_SETS["fuel_rate"]


@pytest.mark.parametrize(
    ("pid", "changes", "data"),
    [
        (0x0C, {"engine_rpm": 2000.0}, "1F40"),
        (0x0C, {"engine_rpm": 800.1}, "0C80"),  # 3200.4 -> 3200, nearest
        (0x0C, {"engine_rpm": 800.2}, "0C81"),  # 3200.8 -> 3201, not truncated
        (0x0D, {"speed_kmh": 57.6}, "3A"),
        (0x0D, {"speed_kmh": 300.0}, "FF"),  # clamped
        (0x0B, {"map_kpa": 50.4}, "32"),
        (0x10, {"maf_gps": 5.36}, "0218"),
        (0x5E, {"fuel_rate_lph": 1.76}, "0023"),  # 35.2 raw steps of 0.05 L/h
        (0x05, {"coolant_c": 88.0}, "80"),
        (0x0F, {"iat_c": -55.0}, "00"),  # clamped at -40
        (0x46, {"ambient_c": 20.0}, "3C"),
        (0x04, {"engine_load_pct": 50.0}, "80"),  # 127.5 -> 128, half up
        (0x11, {"throttle_pct": 100.0}, "FF"),
        (0x2F, {"fuel_level_pct": 80.0}, "CC"),
        (0x03, {"fuel_system_status": 4}, "0400"),
        (0x1F, {"run_time_s": 1000.0}, "03E8"),
        (0x33, {"baro_kpa": 101.0}, "65"),
        (0x42, {"battery_v": 14.2}, "3778"),
        (0x44, {"lambda_": 0.88}, "70A4"),
        (0x44, {"lambda_": 2.0}, "FFFF"),
        (0xA6, {"odometer_km": 12345.6}, "0001E240"),
    ],
)
def test_encode_response_matches_j1979(warm_state, pid, changes, data):
    state = dataclasses.replace(warm_state, **changes)
    payload = bytes((0x41, pid)) + bytes.fromhex(data)
    expected = bytes((len(payload),)) + payload
    assert encode_response(pid, state, "fuel_rate") == expected + b"\x55" * (8 - len(expected))


def test_encode_response_unsupported(warm_state):
    assert encode_response(0x10, warm_state, "map") is None
    assert encode_response(0x5C, warm_state, "fuel_rate") is None


def test_responder_addressing_and_silence():
    car = KeiCar(CarConfig(), SHORT_CYCLE)
    responder = ObdResponder(car, "map")
    answer = responder.respond(obd_request(0x0D, timestamp=123.5), 3.0)
    assert answer.arbitration_id == 0x7E8 and answer.timestamp == 123.5
    assert bytes(answer.data)[:4] == bytes((3, 0x41, 0x0D, 25))
    assert responder.respond(obd_request(0x0C, arbitration_id=0x7E0), 3.0) is not None
    assert responder.respond(obd_request(0x0C, arbitration_id=0x7E1), 3.0) is None
    assert responder.respond(obd_request(0x10), 3.0) is None  # no MAF on a kei
    mode_09 = can.Message(arbitration_id=0x7DF, is_extended_id=False, data=bytes((2, 9, 2, 0, 0, 0, 0, 0)))
    assert responder.respond(mode_09, 3.0) is None
    assert responder.respond(obd_request(0x0C), SHORT_CYCLE.duration_s + 0.5) is None  # ignition off


# --- broadcast -------------------------------------------------------------------------------------------


def test_broadcast_round_trip(warm_state):
    database = cantools.database.load_file(str(SIM_DBC_PATH))
    schedule = BroadcastSchedule()
    assert [period for period, _ in schedule] == [0.02, 0.02, 0.1, 0.5]
    frames = schedule.frames_due(0.01, warm_state)
    assert [m.arbitration_id for m in frames] == [0x180, 0x1A0, 0x200, 0x320]
    decoded = {}
    for message in frames:
        assert message.dlc == 8
        decoded.update(database.decode_message(message.arbitration_id, message.data))
    expected = {
        "engine_speed_rpm": (warm_state.engine_rpm, 0.25),
        "throttle_position_pct": (warm_state.throttle_pct, 0.4),
        "intake_map_kpa": (warm_state.map_kpa, 0.5),
        "intake_air_temp_c": (warm_state.iat_c, 1),
        "fuel_cut_active": (warm_state.fuel_cut, 1),
        "vehicle_speed_kmh": (warm_state.speed_kmh, 0.01),
        "fuel_rate_lph": (warm_state.fuel_rate_lph, 0.01),
        "fuel_level_pct": (warm_state.fuel_level_pct, 0.5),
        "odometer_km": (warm_state.odometer_km, 0.1),
        "coolant_temp_c": (warm_state.coolant_c, 1),
        "ignition_on": (1, 1),
        "battery_voltage_v": (warm_state.battery_v, 0.1),
    }
    for name, (value, step) in expected.items():
        assert decoded[name] == pytest.approx(float(value), abs=step / 2 + 1e-9), name


def test_broadcast_schedule_no_burst_and_silent_when_off(warm_state):
    schedule = BroadcastSchedule()
    assert len(schedule.frames_due(0.0, warm_state)) == 1
    late = schedule.frames_due(5.0, warm_state)
    assert sorted(m.arbitration_id for m in late) == [0x180, 0x1A0, 0x200, 0x320]
    assert schedule.next_due_s() == pytest.approx(5.002)  # SIM_SPEED (2 ms phase), not a backlog
    off = dataclasses.replace(warm_state, ignition=False)
    assert schedule.frames_due(10.0, off) == []


# --- offline frames and logs -----------------------------------------------------------------------------


def test_generate_frames_counts_and_order():
    frames = generate_frames(SHORT_CYCLE, pid_set="fuel_rate", start_time=1000.0)
    messages = list(frames)
    times = [m.timestamp for m in messages]
    assert times == sorted(times) and times[0] >= 1000.0 and times[-1] < 1000.0 + SHORT_CYCLE.duration_s + 0.01
    by_id: dict[int, int] = {}
    for m in messages:
        by_id[m.arbitration_id] = by_id.get(m.arbitration_id, 0) + 1
    assert by_id == {0x180: 400, 0x1A0: 400, 0x200: 80, 0x320: 16, 0x7DF: 80, 0x7E8: 80}
    polled = [m.data[2] for m in messages if m.arbitration_id == 0x7DF]
    assert polled[:6] == [0x00, 0x20, 0x40, 0x60, 0x80, 0xA0]  # discovery first
    assert {0x0C, 0x0D, 0x10, 0x5E} <= set(polled)
    assert frames.truth.distance_km == pytest.approx(SHORT_CYCLE.distance_km, rel=1e-12)


def test_write_log_candump(tmp_path):
    path = tmp_path / "wltc-jp.log"
    truth = write_log(path, "wltc-jp", broadcast=False)
    requests = 14770  # 0.010 s + k * 0.1 s < 1477 s
    messages = list(can.LogReader(str(path)))
    assert len(messages) == 2 * requests
    times = [m.timestamp for m in messages]
    assert times == sorted(times)
    assert times[0] == pytest.approx(1775034000.010)  # 2026-04-01T09:00:00Z
    assert {m.arbitration_id for m in messages} == {0x7DF, 0x7E8}
    assert truth.distance_km == pytest.approx(15.012, abs=0.001)
    copy = tmp_path / "again.log"
    write_log(copy, "wltc-jp", broadcast=False)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(copy.read_bytes()).digest()


# --- live ------------------------------------------------------------------------------------------------


def responses(bus: can.BusABC, seen_ids: set[int]) -> dict[int, can.Message]:
    """The OBD-II answers waiting on ``bus`` by PID; every ID seen goes into ``seen_ids``."""
    answers = {}
    while (message := bus.recv(timeout=0)) is not None:
        seen_ids.add(message.arbitration_id)
        if message.arbitration_id == 0x7E8:
            answers[message.data[2]] = message
    return answers


def virtual_pair():
    channel = f"sim-test-{uuid.uuid4().hex}"
    make = lambda: can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)  # noqa: E731
    return make(), make()


def step_to(clock: SimClock, car: SimulatedCar, t: float) -> None:
    clock.advance(t)
    car.step(clock.now())


def test_live_car_answers_on_virtual_bus():
    car_bus, tester_bus = virtual_pair()
    clock = SimClock(T0)
    car = SimulatedCar(car_bus, CarConfig(), load_cycle("wltc"), pid_set="map", clock=clock)
    try:
        step_to(clock, car, T0 + 20.0)  # 20 s of car time: the car is idling before pulling away
        request = obd_request(0x0C, timestamp=clock.now())
        tester_bus.send(request)
        seen_ids: set[int] = set()
        assert car.step(clock.now()) == 1 and responses(tester_bus, seen_ids) == {}  # the ECU takes a moment
        step_to(clock, car, car.next_due(broadcast=False))
        answer = responses(tester_bus, seen_ids)[0x0C]
        rpm = int.from_bytes(answer.data[3:5], "big") / 4
        assert 700 <= rpm <= 6100
        assert answer.timestamp == pytest.approx(request.timestamp + OBD_RESPONSE_DELAY_S)
        tester_bus.send(obd_request(0x10, timestamp=clock.now()))
        step_to(clock, car, clock.now() + 0.5)
        assert 0x10 not in responses(tester_bus, seen_ids)  # no MAF here
        assert {0x180, 0x1A0, 0x200, 0x320} <= seen_ids
        assert car.error is None and not car.finished.is_set()
    finally:
        car_bus.shutdown()
        tester_bus.shutdown()


def test_live_car_finishes_and_falls_silent():
    car_bus, tester_bus = virtual_pair()
    clock = SimClock(T0)
    car = SimulatedCar(car_bus, CarConfig(), SHORT_CYCLE, clock=clock)
    try:
        while not car.finished.is_set():
            step_to(clock, car, car.next_due())
        assert clock.now() == T0 + SHORT_CYCLE.duration_s
        assert not car.state.ignition
        assert car.truth.distance_km == pytest.approx(SHORT_CYCLE.distance_km, rel=1e-9)
        responses(tester_bus, set())
        tester_bus.send(obd_request(0x0C, timestamp=clock.now()))
        step_to(clock, car, clock.now() + 1.0)
        assert tester_bus.recv(timeout=0) is None
    finally:
        car_bus.shutdown()
        tester_bus.shutdown()


@pytest.mark.smoke
def test_car_thread_on_a_scaled_clock():
    """Watching a drive: the car in its own thread, paced by a scaled wall clock."""
    car_bus, tester_bus = virtual_pair()
    clock = ScaledClock(50.0)
    car = SimulatedCar(car_bus, CarConfig(), SHORT_CYCLE, clock=clock)
    try:
        car.start()
        tester_bus.send(obd_request(0x0D, timestamp=clock.now()))
        assert car.finished.wait(timeout=5.0)
        seen_ids: set[int] = set()
        assert 0x0D in responses(tester_bus, seen_ids) and 0x320 in seen_ids
        assert car.error is None and car.truth.distance_km == pytest.approx(SHORT_CYCLE.distance_km, rel=1e-9)
    finally:
        car.stop()
        car_bus.shutdown()
        tester_bus.shutdown()
