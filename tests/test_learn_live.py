"""Learning while the agent polls: a seeded car, its ECU, the agent's own poller and live loop on one simulated
clock (the same events on any machine load). Once speed and rpm are learnt the car folder is written, one line
says so, the pipeline reads the car's own frames, and with go_passive no more speed or rpm requests go out."""

from __future__ import annotations

import json
import threading

import can
import pytest

from firmware_bridge.cli import main
from firmware_bridge.clock import SimClock
from firmware_bridge.config import load_config
from firmware_bridge.learn.live import LiveLearner, live_learner
from firmware_bridge.obd.poller import ObdPoller, PollSettings
from firmware_bridge.pipeline import Pipeline
from firmware_bridge.sim import CarConfig, SimulatedCar, seeded_layout
from firmware_bridge.sim.cycles import Cycle, load_cycle
from firmware_bridge.sim.runner import run_on_sim_clock
from firmware_bridge.vehicles import load_vehicle

DRIVE = Cycle("wltc-1020-1200", load_cycle("wltc").speeds_kmh[1020:1201])
START = 1775034000.0


class _Recorder(can.Listener):
    """Every frame on the bus into a candump log, and every OBD-II mode 01 request as (car time, PID)."""

    def __init__(self, path, request_id: int) -> None:
        self.logger = can.Logger(str(path))
        self.request_id = request_id
        self.seen: list[tuple[float, int]] = []

    def on_message_received(self, msg: can.Message) -> None:
        self.logger.on_message_received(msg)
        if msg.arbitration_id == self.request_id and msg.data[1] == 0x01:
            self.seen.extend((msg.timestamp, pid) for pid in msg.data[2:1 + msg.data[0]])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("request_id, ecu_id", [(0x7DF, 0x7E8), (0x18DB33F1, 0x18DAF110)], ids=["11bit", "29bit"])
def test_live_learning_writes_the_folder_and_stops_polling_speed_and_rpm(request_id, ecu_id, tmp_path, capsys):
    # Six PIDs per request: the ECU answers in multi-frame ISO-TP messages, which both learners must split.
    layout = seeded_layout(5)
    channel = "learn-live-test"
    clock = SimClock(START, threads=1)
    car_bus, agent_bus, tap_bus = (can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
                                   for _ in range(3))
    car = SimulatedCar(car_bus, CarConfig(), DRIVE, clock=clock, broadcast=layout.schedule(), start_time=START,
                       ecu_tx_id=ecu_id)
    pipeline = Pipeline()
    values = pipeline.state.values
    poller = ObdPoller(agent_bus, PollSettings(max_pids_per_request=6, request_id=request_id), clock,
                       engine_rpm=lambda: values.get("engine_rpm"),
                       speed_kmh=lambda: values.get("speed_kmh"))
    said: list[tuple[float, str]] = []
    learner = LiveLearner(pipeline, tmp_path / "learnt", "kei", go_passive=True, poller=poller, check_s=15.0,
                          say=lambda line: said.append((clock.now(), line)), background=False)
    requests = _Recorder(tmp_path / "drive.log", request_id)
    stop = threading.Event()

    def on_tick():
        learner.tick()
        if car.finished.is_set():
            stop.set()

    poller.start()
    try:
        run_on_sim_clock(agent_bus, pipeline, clock, stop, [poller, learner], on_tick=on_tick, cars=[car],
                         taps=[(tap_bus, requests)])
    finally:
        poller.stop()
        requests.logger.stop()
        for bus in (car_bus, agent_bus, tap_bus):
            bus.shutdown()

    assert len(said) == 1, said
    learnt_at, line = said[0]
    assert "learnt the car's own frames" in line and "polling of speed and rpm stopped" in line
    assert learnt_at - START < 120  # a couple of minutes of driving were enough
    folder = tmp_path / "learnt" / "kei"
    assert load_vehicle(str(folder)).dbc == (str(folder / "kei.dbc"),)
    for quantity in ("speed_kmh", "engine_rpm"):
        true_id = layout.database.get_message_by_name(layout.targets[quantity][0]).frame_id
        assert f"{quantity} in 0x{true_id:X}" in line
    # The pipeline reads the learnt frames now, and the poller asks for neither PID any more.
    routes = pipeline.state.routes()
    assert any(message.startswith("KEI_") for message in routes)
    late = [pid for t, pid in requests.seen if t > learnt_at + 1.0]
    assert late and 0x0D not in late and 0x0C not in late
    assert {0x0D, 0x0C} <= {pid for t, pid in requests.seen if t < learnt_at}
    [trip] = pipeline.stats()["trips"]  # one trip, its distance unbroken by the switch of source
    assert trip["distance_km"] == pytest.approx(car.truth.distance_km, rel=0.005)
    # The recording of that drive (multi-PID answers until the switch) learns the same frames offline.
    assert main(["learn", str(tmp_path / "drive.log"), "--name", "again", "--out", str(tmp_path),
                 "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)["quantities"]
    for quantity in ("speed_kmh", "engine_rpm"):
        assert found[quantity]["id"] == layout.database.get_message_by_name(layout.targets[quantity][0]).frame_id


def test_learning_is_off_unless_configured(tmp_path):
    config = load_config(None)
    assert live_learner(config, Pipeline(), None) is None
    path = tmp_path / "agent.toml"
    path.write_text("[learn]\nenabled = true\ngo_passive = true\n")
    config = load_config(str(path))
    learner = live_learner(config, Pipeline(), None)
    assert learner is not None and learner.go_passive and learner.name == "kei"
