"""Learning while the agent polls: a seeded car on a python-can virtual bus, the agent's own poller and live
loop; once speed and rpm are learnt the car folder is written, the pipeline reads the car's frames, and with
go_passive no more speed or rpm requests go out. Runs on a scaled clock (the live tests race the wall clock:
on a loaded machine re-run it alone before concluding anything)."""

from __future__ import annotations

import threading

import can
import pytest

from firmware_bridge.clock import ScaledClock
from firmware_bridge.config import load_config
from firmware_bridge.learn.live import LiveLearner, live_learner
from firmware_bridge.obd.poller import ObdPoller, PollSettings
from firmware_bridge.pipeline import Pipeline
from firmware_bridge.sim import SimulatedCar, seeded_layout
from firmware_bridge.sim.cycles import Cycle, load_cycle
from firmware_bridge.sources.live import run_live
from firmware_bridge.vehicles import load_vehicle

DRIVE = Cycle("wltc-1020-1200", load_cycle("wltc").speeds_kmh[1020:1201])


class _Requests(can.Listener):
    """Every OBD-II request on the bus, as (car time, PID)."""

    def __init__(self, clock) -> None:
        self.clock, self.seen = clock, []

    def on_message_received(self, msg: can.Message) -> None:
        if msg.arbitration_id == 0x7DF and msg.data[1] == 0x01:
            self.seen.extend((self.clock.now(), pid) for pid in msg.data[2:1 + msg.data[0]])


@pytest.mark.timeout(120)
def test_live_learning_writes_the_folder_and_stops_polling_speed_and_rpm(tmp_path):
    layout = seeded_layout(5)
    channel = "learn-live-test"
    clock = ScaledClock(10.0)
    buses = [can.Bus(interface="virtual", channel=channel, preserve_timestamps=True) for _ in range(3)]
    car_bus, agent_bus, monitor_bus = buses
    car = SimulatedCar(car_bus, cycle=DRIVE, broadcast=layout.schedule(), clock=clock)
    pipeline = Pipeline()
    values = pipeline.state.values
    poller = ObdPoller(agent_bus, PollSettings(), clock, engine_rpm=lambda: values.get("engine_rpm"),
                       speed_kmh=lambda: values.get("speed_kmh"))
    said: list[tuple[float, str]] = []
    learner = LiveLearner(pipeline, tmp_path / "learnt", "kei", go_passive=True, poller=poller, check_s=15.0,
                          say=lambda line: said.append((clock.now(), line)))
    requests = _Requests(clock)
    monitor = can.Notifier(monitor_bus, [requests])
    stop = threading.Event()

    def on_tick():
        learner.tick()
        if car.finished.is_set():
            stop.set()

    car.start()
    poller.start()
    try:
        run_live(agent_bus, pipeline, clock, stop, [poller, learner], on_tick)
    finally:
        poller.stop()
        car.stop()
        monitor.stop()
        for bus in buses:
            bus.shutdown()

    assert len(said) == 1, said
    learnt_at, line = said[0]
    assert "learnt the car's own frames" in line and "polling of speed and rpm stopped" in line
    folder = tmp_path / "learnt" / "kei"
    assert load_vehicle(str(folder)).dbc == (str(folder / "kei.dbc"),)
    for quantity in ("speed_kmh", "engine_rpm"):
        true_id = layout.database.get_message_by_name(layout.targets[quantity][0]).frame_id
        assert f"0x{true_id:X}" in line
    # The pipeline reads speed from the learnt frame now, and the poller asks for neither PID any more.
    assert any(message.startswith("KEI_") for message in pipeline.state.wanted_signals())
    late = [pid for t, pid in requests.seen if t > learnt_at + 2.0]
    assert late and 0x0D not in late and 0x0C not in late
    assert {0x0D, 0x0C} <= {pid for t, pid in requests.seen if t < learnt_at}


def test_learning_is_off_unless_configured(tmp_path):
    config = load_config(None)
    assert live_learner(config, Pipeline(), None) is None
    path = tmp_path / "agent.toml"
    path.write_text("[learn]\nenabled = true\ngo_passive = true\n")
    config = load_config(str(path))
    learner = live_learner(config, Pipeline(), None)
    assert learner is not None and learner.go_passive and learner.name == "kei"
