"""Vehicle state priorities, trip boundaries and RDE dynamics on hand-made samples."""

import numpy as np
import pytest

from firmware_bridge.analytics.dynamics import Dynamics
from firmware_bridge.analytics.settings import AnalyticsSettings
from firmware_bridge.analytics.tracker import TripTracker
from firmware_bridge.records import DecodedFrame
from firmware_bridge.state.vehicle import VehicleState, load_signal_map
from firmware_bridge.vehicles import load_vehicle

from conftest import T0
from samples import Sample, feed


def test_same_signal_name_in_two_messages_never_collides():
    state = VehicleState(load_signal_map(car_map=load_vehicle("kei-sim").signal_map))
    obd = lambda t, v: DecodedFrame(t, 0x7E8, "OBD2_RESPONSE", {"pid": 13, "vehicle_speed_kmh": v})
    sim = lambda t, v: DecodedFrame(t, 0x1A0, "SIM_SPEED", {"vehicle_speed_kmh": v})
    def accepted(*frames):
        block = state.accept_frames(list(frames))
        return [(t, block.quantities[q], v) for t, q, v in zip(block.t.tolist(), block.qid.tolist(), block.value.tolist())]

    assert accepted(obd(T0, 50)) == [(T0, "speed_kmh", 50.0)]
    assert accepted(sim(T0 + 0.1, 51.2)) == [(T0 + 0.1, "speed_kmh", 51.2)]
    assert accepted(obd(T0 + 0.2, 51)) == []  # the broadcast frame is speaking: OBD speed is ignored
    assert state.values["speed_kmh"] == 51.2
    assert accepted(obd(T0 + 3.0, 52)) == [(T0 + 3.0, "speed_kmh", 52.0)]  # broadcast gone quiet
    # the same rule inside one block: the broadcast frame silences the OBD answers after it
    state = VehicleState(load_signal_map(car_map=load_vehicle("kei-sim").signal_map))
    assert accepted(obd(T0, 50), sim(T0 + 0.1, 51.2), obd(T0 + 0.2, 51), obd(T0 + 3.0, 52)) == [
        (T0, "speed_kmh", 50.0), (T0 + 0.1, "speed_kmh", 51.2), (T0 + 3.0, "speed_kmh", 52.0)]


def test_user_signal_map_comes_first(tmp_path):
    user = tmp_path / "map.toml"
    user.write_text('speed_kmh = ["MY_ABS.wheel_speed"]\n')
    signal_map = load_signal_map(user, car_map=load_vehicle("kei-sim").signal_map)
    assert signal_map["speed_kmh"][:2] == ["MY_ABS.wheel_speed", "SIM_SPEED.vehicle_speed_kmh"]
    assert "OBD2_RESPONSE.vehicle_speed_kmh" in signal_map["speed_kmh"]


def drive(t0, seconds, speed=30.0):
    out = []
    for i in range(seconds):
        out += [Sample(t0 + i, "engine_rpm", 1500.0), Sample(t0 + i + 0.5, "speed_kmh", speed)]
    return out


@pytest.mark.parametrize("block", [1, 7, None])
def test_engine_off_ends_trip_but_idle_stop_does_not(block):
    tracker = TripTracker(AnalyticsSettings(), load_vehicle())
    samples = drive(T0, 120)
    t = T0 + 120
    for i in range(60):  # idle-stop at a light: rpm 0, standing, one minute
        samples += [Sample(t + i, "engine_rpm", 0.0), Sample(t + i + 0.5, "speed_kmh", 0.0)]
    samples += drive(t + 60, 120)
    t += 180
    for i in range(400):  # parked with the ignition on: the trip ends after engine_off_s
        samples += [Sample(t + i, "engine_rpm", 0.0), Sample(t + i + 0.5, "speed_kmh", 0.0)]
    closed = feed(tracker, samples, block)
    assert len(closed) == 1
    assert closed[0].end == pytest.approx(t, abs=1.0)
    assert closed[0].distance_km == pytest.approx(30 * 239.5 / 3600, rel=0.01)
    assert tracker.trip is None  # parked: rpm 0 samples do not open a new trip


def test_ignition_off_and_short_trips():
    tracker = TripTracker(AnalyticsSettings(min_trip_s=60), load_vehicle())
    closed = feed(tracker, drive(T0, 30) + [Sample(T0 + 31, "ignition", 0.0)])
    assert closed == [] and tracker.dropped_short == 1
    closed = feed(tracker, drive(T0 + 100, 90) + [Sample(T0 + 191, "ignition", 0.0)])
    assert len(closed) == 1 and closed[0].duration_s == pytest.approx(89.5, abs=1)


def test_a_daemon_keeps_only_its_latest_trips():
    tracker = TripTracker(AnalyticsSettings(min_trip_s=60), load_vehicle())
    tracker.keep_finished = 2
    closed = []
    for n in range(4):  # four drives, each ended by the ignition
        t0 = T0 + n * 1000
        closed += feed(tracker, drive(t0, 90) + [Sample(t0 + 91, "ignition", 0.0)])
    assert len(closed) == 4  # every trip still reaches the listeners (points, calibration)
    assert tracker.finished == closed[-2:]


@pytest.mark.parametrize("block", [1, 7, None])
def test_gap_is_counted_not_integrated(block):
    tracker = TripTracker(AnalyticsSettings(max_gap_s=5.0), load_vehicle())
    samples = drive(T0, 100) + drive(T0 + 130, 100)  # 30 s without data in the middle
    feed(tracker, samples, block)
    trip = tracker.close()
    assert trip.gaps == 1
    assert trip.distance_km == pytest.approx(30 * 198 / 3600, rel=0.01)


def dynamics_of(speeds):
    d = Dynamics(AnalyticsSettings())
    d.add_speeds(T0 + np.arange(len(speeds), dtype=np.float64), np.array(speeds, dtype=np.float64))
    return d


def test_rpa_and_va_percentile_match_rde_definition():
    # constant 1 m/s² from 0 to 72 km/h (20 s), then cruise 60 s
    speeds = [3.6 * i for i in range(21)] + [72.0] * 60
    d = dynamics_of(speeds)
    # 1 Hz samples 1..19 have a = 1 m/s²; sample 20 has a = 0.5; v·a = v[m/s]·a
    va = [i * 1.0 for i in range(1, 20)] + [20 * 0.5]
    distance_m = sum(speeds[1:-1]) / 3.6
    assert d.rpa_m_s2 == pytest.approx(sum(va) / distance_m, rel=1e-6)
    ranked = sorted(va)
    assert d.va_pos_95_m2_s3 == pytest.approx(ranked[int(0.95 * len(ranked) + 0.999) - 1], abs=0.01)


def test_resampling_irregular_samples_keeps_rpa():
    speeds = [3.6 * i for i in range(21)] + [72.0] * 60
    regular = dynamics_of(speeds)
    d = Dynamics(AnalyticsSettings())
    for i in range(0, 2 * len(speeds) - 1):  # every 0.5 s, linearly between the 1 Hz values, one at a time
        t = i / 2
        lo = int(t)
        v = speeds[lo] if lo + 1 >= len(speeds) else speeds[lo] + (speeds[lo + 1] - speeds[lo]) * (t - lo)
        d.add_speeds(np.array([T0 + t]), np.array([v]))
    assert d.rpa_m_s2 == pytest.approx(regular.rpa_m_s2, rel=1e-6)


def test_harsh_events_once_per_episode():
    speeds = [0, 0, 12, 24, 36, 40, 40, 40, 28, 16, 4, 0, 0]  # +3.3 m/s² launch, -3.3 m/s² stop
    d = dynamics_of(speeds)
    assert (d.harsh_accel_events, d.harsh_brake_events) == (1, 1)
    assert dynamics_of([3.6 * i for i in range(21)]).harsh_accel_events == 0  # 1 m/s² is not harsh
