"""`firmware-bridge run` end to end on a python-can virtual bus, in real time, stopped by SIGTERM."""

import os
import signal
import threading

import can
import pytest

from firmware_bridge.cli import main
from firmware_bridge.sim import SimulatedCar
from firmware_bridge.sim.cycles import Cycle

SHORT = Cycle("short", tuple([0.0] * 2 + [6.0 * i for i in range(7)] + [36.0 - 6.0 * i for i in range(7)] + [0.0] * 2))


@pytest.mark.smoke
@pytest.mark.parametrize("obd", [False, True], ids=["passive", "polling"])
def test_run_reads_the_bus_and_stops_cleanly_on_sigterm(tmp_path, capsys, obd):
    channel = f"run-test-{obd}"
    car_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    car = SimulatedCar(car_bus, cycle=SHORT, pid_set="map", broadcast=not obd)
    out = tmp_path / "drive.lp"
    config = tmp_path / "agent.toml"
    config.write_text("[analytics]\nmin_trip_s = 5\n")
    argv = ["run", "-i", "virtual", "-c", channel, "--out", str(out), "--vehicle-id", "test car", "--vehicle", "kei-sim",
            "--config", str(config)]
    if obd:
        argv.append("--obd")

    def stop_when_done():
        car.finished.wait(60)
        os.kill(os.getpid(), signal.SIGTERM)

    car.start()
    threading.Thread(target=stop_when_done, daemon=True).start()
    try:
        assert main(argv) == 0
    finally:
        car.stop()
        car_bus.shutdown()
    captured = capsys.readouterr()
    assert "polling on" in captured.err if obd else "off (passive)" in captured.err
    lines = out.read_text().splitlines()
    vehicle = [line for line in lines if line.startswith("vehicle,")]
    assert len(vehicle) >= SHORT.duration_s - 4  # one point per second of the drive, in wall time
    assert all(line.startswith("vehicle,vehicle=test\\ car ") for line in vehicle)
    trip = [line for line in lines if line.startswith("trip,")]
    assert len(trip) == 1 and "fuel_source=\"" in trip[0]
    assert "speed_density" in trip[0] if obd else "fuel_rate" in trip[0]
    assert "km/h" in captured.out  # the live view
