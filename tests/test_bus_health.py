"""Bus health counts every frame the interface delivers: a flood of frames no database describes, error
frames, a controller going error-passive and then bus-off (agent point fields and one journal WARNING).
Real python-can virtual buses and the real live loop."""

from __future__ import annotations

import logging
import threading
import time

import can
import pytest

from conftest import T0, obd_response
from firmware_bridge.clock import RealClock
from firmware_bridge.health import AgentHealth
from firmware_bridge.pipeline import Pipeline
from firmware_bridge.records import OVERHEAD_BITS_11, OVERHEAD_BITS_29
from firmware_bridge.sources.bus import open_bus
from firmware_bridge.sources.live import (
    BUS_OFF, CAN_ERR_BUSOFF, CAN_ERR_CRTL, CAN_ERR_RESTARTED, PASSIVE, BusHealth, run_live)

pytestmark = pytest.mark.timeout(120)

FLOOD = 20_000


def _wait(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "frames did not arrive"
        time.sleep(0.02)


def test_every_delivered_frame_counts_and_bus_off_is_reported(caplog):
    channel = f"health-{time.monotonic_ns()}"
    bus = open_bus("virtual", channel)  # as `run` opens it: no filters
    car = can.Bus(interface="virtual", channel=channel)
    pipeline = Pipeline()
    health = BusHealth(bus, f"virtual:{channel}")
    pipeline.block_listeners.append(health.on_block)  # as `run` has it
    agent = AgentHealth(pipeline, "test-car", bitrate=500_000)
    agent.bus = health
    stop = threading.Event()
    live = threading.Thread(target=run_live, args=(bus, pipeline, RealClock(), stop), daemon=True)
    live.start()
    try:
        agent.point(T0)
        frames = [can.Message(arbitration_id=0x100 + i % 0x500, is_extended_id=False, data=bytes(8))
                  for i in range(FLOOD)]
        frames += [can.Message(arbitration_id=0x18FEF100, is_extended_id=True, data=bytes(4)) for _ in range(100)]
        frames += [obd_response(0x0D, [50], T0) for _ in range(10)]
        for msg in frames:
            car.send(msg)
        _wait(lambda: pipeline.decoder.counts.total == len(frames))  # handed over at the next tick (0.1 s)
        point = agent.point(T0 + 10.0)
        assert point.fields["bus_frames"] == len(frames)
        assert point.fields["frames_per_s"] == pytest.approx(len(frames) / 10.0)
        bits = FLOOD * (OVERHEAD_BITS_11 + 64) + 100 * (OVERHEAD_BITS_29 + 32) + 10 * (OVERHEAD_BITS_11 + 64)
        assert point.fields["bus_load_pct"] == pytest.approx(100.0 * bits / (500_000 * 10.0))
        assert point.fields["bus_state"] == "error_active" and point.fields["error_frames"] == 0

        with caplog.at_level(logging.WARNING):
            car.send(can.Message(is_error_frame=True, arbitration_id=CAN_ERR_CRTL, data=bytes([0, 0x20, 0, 0, 0, 0, 0, 0])))
            _wait(lambda: health.state == PASSIVE)
            car.send(can.Message(is_error_frame=True, arbitration_id=CAN_ERR_BUSOFF, data=bytes(8)))
            car.send(can.Message(is_error_frame=True, arbitration_id=CAN_ERR_BUSOFF, data=bytes(8)))  # still off
            _wait(lambda: health.error_frames == 3)
        point = agent.point(T0 + 11.0)
        assert point.fields["bus_state"] == BUS_OFF
        assert point.fields["bus_off_count"] == 1 and point.fields["error_frames"] == 3
        warnings = [r for r in caplog.records if "bus-off" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert f"virtual:{channel}" in warnings[0].getMessage()

        car.send(can.Message(is_error_frame=True, arbitration_id=CAN_ERR_RESTARTED, data=bytes(8)))
        _wait(lambda: health.error_frames == 4)
        assert health.state == "error_active" and health.bus_off_count == 1
    finally:
        stop.set()
        live.join(timeout=10)
        car.shutdown()
        bus.shutdown()


class _StateBus(can.BusABC):
    """A bus whose driver reports the controller state through python-can's ``BusABC.state``."""

    def __init__(self) -> None:
        super().__init__(channel="state")
        self.reported = can.BusState.ACTIVE

    @property
    def state(self) -> can.BusState:
        return self.reported

    def send(self, msg, timeout=None) -> None:
        raise NotImplementedError

    def _recv_internal(self, timeout):
        return None, False


def test_controller_state_from_python_can(caplog):
    bus = _StateBus()
    health = BusHealth(bus, "pcan:PCAN_USBBUS1")
    health.poll()
    assert health.state == "error_active"
    bus.reported = can.BusState.ERROR
    with caplog.at_level(logging.WARNING):
        health.poll()
        health.poll()
    assert health.state == BUS_OFF and health.bus_off_count == 1
    assert sum("bus-off" in r.getMessage() for r in caplog.records) == 1
    bus.reported = can.BusState.ACTIVE
    health.poll()
    assert health.state == "error_active"
    bus.shutdown()
