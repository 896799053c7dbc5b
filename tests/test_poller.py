"""The OBD-II poller on a live virtual bus: quiet while the engine is off, backs off while the bus sleeps,
and comes back when the car wakes."""

import can
import pytest

from firmware_bridge.obd.pids import fast_and_slow, supported_from_bitmap
from firmware_bridge.sim import CarConfig
from firmware_bridge.sim.cycles import Cycle

from livedrive import live_drive

T0 = 1775034000.0


def ramp(up_s, cruise_s, down_s, v_kmh):
    return ([v_kmh * i / up_s for i in range(up_s)] + [v_kmh] * cruise_s
            + [v_kmh * (1 - i / down_s) for i in range(down_s + 1)])


def requests_between(log_path, t_from, t_to):
    return [m for m in can.LogReader(log_path) if m.arbitration_id == 0x7DF and t_from <= m.timestamp < t_to]


def test_bitmap_and_schedule_helpers():
    data = bytes([6, 0x41, 0x00, 0xBE, 0x1F, 0xA8, 0x13])
    assert supported_from_bitmap(0x00, data) == {0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D, 0x0E, 0x0F,
                                                 0x10, 0x11, 0x13, 0x15, 0x1C, 0x1F, 0x20}
    fast, slow = fast_and_slow({0x03, 0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0F, 0x11})
    assert fast == [0x0D, 0x0C, 0x0B, 0x03, 0x04, 0x11] and slow == [0x05, 0x0F]
    fast, _ = fast_and_slow({0x0C, 0x0D, 0x0B, 0x10, 0x5E, 0x03})
    assert fast == [0x0D, 0x0C, 0x5E]


def test_engine_off_means_almost_no_requests(tmp_path):
    # drive, stand 60 s with idle-stop (engine off, ignition on), drive again
    trace = ramp(20, 20, 20, 40.0) + [0.0] * 60 + ramp(20, 20, 20, 40.0)
    cycle = Cycle("stop-and-go", tuple(trace))
    drive = live_drive(cycle, "map", record=tmp_path / "idle-stop.log",
                       config=CarConfig(idle_stop=True))
    stop_start = T0 + 61
    standing = requests_between(drive.log_path, stop_start + 15, stop_start + 55)
    assert len(standing) <= 45  # one rpm probe a second instead of ~9 requests a second
    assert {m.data[2] for m in standing} == {0x0C}
    moving_again = requests_between(drive.log_path, stop_start + 65, stop_start + 100)
    assert len(moving_again) >= 250
    [trip] = drive.pipeline.stats()["trips"]  # an idle-stop does not end the trip
    assert trip["distance_km"] == pytest.approx(drive.truth.distance_km, rel=0.01)


def test_backs_off_while_asleep_and_resumes_on_wake(tmp_path):
    cycle = Cycle("short", tuple(ramp(20, 20, 20, 40.0)))
    warm_up_first = Cycle("idle-then-short", (0.0,) * 35 + cycle.speeds_kmh)  # wake, idle, then drive
    drive = live_drive(cycle, "map", record=tmp_path / "sleep.log", later=(warm_up_first, 180.0))
    asleep = requests_between(drive.log_path, T0 + cycle.duration_s + 2, T0 + 180)
    assert 3 <= len(asleep) <= 12  # 1, 2, 4, 8, 16, 30 s between probes, not 10 a second
    gaps = [b.timestamp - a.timestamp for a, b in zip(asleep, asleep[1:])]
    assert all(b >= a - 0.1 for a, b in zip(gaps, gaps[1:])) and max(gaps) <= 31  # growing, capped
    woke = [m for m in can.LogReader(drive.log_path) if m.arbitration_id == 0x7E8 and m.timestamp >= T0 + 180]
    assert woke and woke[0].timestamp <= T0 + 180 + 31  # rediscovered within one back-off step
    assert {m.data[2] for m in woke} >= {0x00, 0x0C, 0x0D}
    [trip] = drive.pipeline.stats()["trips"]  # 2 minutes of silence is under trip_gap_s: one trip, one gap
    assert trip["gaps"] == 1.0
    assert trip["distance_km"] == pytest.approx(2 * drive.truth.distance_km, rel=0.01)
