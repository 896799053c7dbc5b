"""One simulated clock for the car, its ECU, the poller and the agent: the figures never depend on machine load
or on how fast the drive is played."""

import threading

import can

import pytest

from firmware_bridge.clock import SimClock
from firmware_bridge.sim import EvTruth, GroundTruth
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.sim.runner import OBD_RESPONSE_DELAY_S, TRUTH_TOLERANCE, differences_from_truth

from conftest import run_cli
from livedrive import live_drive
from test_poller import T0, ramp


def test_helper_threads_wake_at_their_simulated_time():
    clock = SimClock(100.0, threads=1)
    stop, woke = threading.Event(), []

    def helper():
        while not clock.wait(stop, 0.25):
            woke.append(clock.now())

    thread = threading.Thread(target=helper)
    thread.start()
    for _ in range(8):  # the loop moves time only to the next wake-up, once the helper is parked again
        clock.settle()
        clock.advance(clock.next_wake_s())
    clock.settle()
    clock.close()
    stop.set()
    thread.join(5)
    assert woke == [100.25, 100.5, 100.75, 101.0, 101.25, 101.5, 101.75, 102.0]


def test_a_set_event_wakes_a_helper_before_time_moves():
    clock = SimClock(0.0, threads=1)
    answer, seen = threading.Event(), []
    thread = threading.Thread(target=lambda: seen.append((clock.wait(answer, 5.0), clock.now())))
    thread.start()
    clock.settle()
    answer.set()
    clock.settle()  # returns once the helper has run
    assert seen == [(True, 0.0)]
    clock.close()
    thread.join(5)


def test_a_live_drive_is_the_same_every_time(tmp_path):
    cycle = Cycle("short", tuple(ramp(20, 30, 20, 45.0)))
    first = live_drive(cycle, "maf", record=tmp_path / "a.log")
    again = live_drive(cycle, "maf", record=tmp_path / "b.log")
    assert first.pipeline.stats() == again.pipeline.stats()
    frames = [[line.split(" ", 2)[::2] for line in (tmp_path / name).read_text().splitlines()]  # not the channel
              for name in ("a.log", "b.log")]
    assert frames[0] == frames[1] and len(frames[0]) > 1000
    # every request while the car is on is answered 2 ms later: the clock never moves past an answer
    log = list(can.LogReader(tmp_path / "a.log"))
    end = T0 + cycle.duration_s - OBD_RESPONSE_DELAY_S
    requests = [m.timestamp for m in log if m.arbitration_id == 0x7DF and m.timestamp < end]
    answers = [m.timestamp for m in log if m.arbitration_id == 0x7E8]
    assert answers == pytest.approx([t + OBD_RESPONSE_DELAY_S for t in requests], abs=2e-6)
    assert first.poller.timeouts <= 2  # only requests sent as the ignition went off


def trip_table(stdout: str) -> str:
    return stdout[stdout.index("\n\n"):]  # what follows the live view


def test_demo_gives_the_same_trip_at_any_pace():
    fast = run_cli("demo")
    assert fast.returncode == 0, fast.stderr
    assert "demo:" not in fast.stderr.replace("demo: simulated", "")  # within tolerance of the ground truth
    paced = run_cli("demo", "--speedup", "600")  # one request per minute of car time, were it wall-clock paced
    assert paced.returncode == 0, paced.stderr
    assert "paced at 600x" in paced.stderr
    assert trip_table(paced.stdout) == trip_table(fast.stdout)
    assert run_cli("demo", "--speedup", "0").returncode == 2


def test_demo_names_figures_off_the_ground_truth():
    truth = GroundTruth(duration_s=100.0, distance_km=10.0, fuel_l=0.5, idle_fuel_l=0.01)
    close = {"total": {"distance_km": 10.0 * (1 + TRUTH_TOLERANCE["distance_km"] / 2), "fuel_used_l": 0.51}}
    assert differences_from_truth(close, truth, "map") == []
    [fuel] = differences_from_truth(close, truth, "fuel_rate")
    assert fuel == "fuel 0.510 L is +2.00 % from the ground truth 0.500 L (tolerance 1 %)"
    assert differences_from_truth({"total": None}, truth) == ["no distance measured (ground truth 10.000 km)",
                                                              "no fuel measured (ground truth 0.500 L)"]
    ev = EvTruth(**{f: 1.0 for f in EvTruth.__dataclass_fields__})
    [energy] = differences_from_truth({"total": {"distance_km": 1.0, "energy_kwh": 1.2}}, ev)
    assert energy.startswith("pack energy 1.200 kWh is +20.00 %")
