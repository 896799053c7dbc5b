"""The live loop: python-can's Notifier delivers frames to the pipeline (and to the OBD poller); every tick the
frames received meanwhile go to the pipeline as one block, where they are counted before any decoding."""

from __future__ import annotations

import collections
import logging
import threading

import can
import numpy as np

from firmware_bridge.pipeline import Pipeline
from firmware_bridge.records import FrameBlock

log = logging.getLogger(__name__)

#: SocketCAN error frame classes (linux/can/error.h), in the error frame's ID, and the controller-problem
#: details in its data byte 1.
CAN_ERR_CRTL, CAN_ERR_BUSOFF, CAN_ERR_RESTARTED = 0x00000004, 0x00000040, 0x00000100
CAN_ERR_CRTL_WARNING, CAN_ERR_CRTL_PASSIVE, CAN_ERR_CRTL_ACTIVE = 0x04 | 0x08, 0x10 | 0x20, 0x40
#: Controller states as the ``agent`` point's ``bus_state`` field gives them.
ACTIVE, WARNING, PASSIVE, BUS_OFF = "error_active", "error_warning", "error_passive", "bus_off"
_PYTHON_CAN_STATES = {can.BusState.ACTIVE: ACTIVE, can.BusState.PASSIVE: PASSIVE, can.BusState.ERROR: BUS_OFF}


class BusHealth:
    """A live bus's error frames, bus-off events and controller state, from SocketCAN error frames (in the
    blocks the pipeline reads: ``pipeline.block_listeners``) and from python-can's ``bus.state`` where the
    interface reports one. A bus-off is one journal WARNING. Frames and bits are the pipeline's own counts."""

    def __init__(self, bus: can.BusABC | None = None, name: str = "the CAN bus") -> None:
        self.bus, self.name = bus, name
        self.error_frames = self.bus_off_count = 0
        self.state = ACTIVE
        self._reported = None  # the last state python-can's bus.state gave

    def on_block(self, block: FrameBlock) -> None:
        for row in np.flatnonzero(block.error):
            self._error_frame(int(block.frame_id[row]), block.data[row, 1] if block.length[row] > 1 else None)
            self.error_frames += 1  # after the state it gives: whoever sees the count sees the state too

    def _error_frame(self, error_class: int, detail: int | None) -> None:
        if error_class & CAN_ERR_BUSOFF:
            self._set(BUS_OFF)
        elif error_class & CAN_ERR_RESTARTED:
            self._set(ACTIVE)
        elif error_class & CAN_ERR_CRTL and detail is not None:
            if detail & CAN_ERR_CRTL_PASSIVE:
                self._set(PASSIVE)
            elif detail & CAN_ERR_CRTL_WARNING:
                self._set(WARNING)
            elif detail & CAN_ERR_CRTL_ACTIVE:
                self._set(ACTIVE)

    def poll(self) -> None:
        """python-can's own view of the controller (PCAN, Kvaser, ... report it; others always say active)."""
        if self.bus is None:
            return
        try:
            reported = _PYTHON_CAN_STATES.get(self.bus.state)
        except (NotImplementedError, can.CanError, OSError):
            return
        if reported is not None and reported != self._reported:
            self._reported = reported
            if reported != ACTIVE or self.state == BUS_OFF:
                self._set(reported)

    def _set(self, state: str) -> None:
        if state == BUS_OFF and self.state != BUS_OFF:
            self.bus_off_count += 1
            log.warning("%s is bus-off: its controller stopped sending and receiving after too many errors "
                        "(check wiring, termination and bitrate; SocketCAN restarts it with "
                        "'ip link set can0 type can restart-ms 100')", self.name)
        self.state = state


class PipelineFeeder(can.Listener):
    """Collects the frames python-can's Notifier receives; every tick hands them to the pipeline as one block.

    A deque's ``append`` takes each frame (C code, atomic, no lock), so the Notifier's thread spends nothing of
    its own per frame beyond python-can's receive."""

    def __init__(self) -> None:
        self._frames: collections.deque[can.Message] = collections.deque()
        self.on_message_received = self._frames.append  # the method below, without a Python call per frame

    def on_message_received(self, msg: can.Message) -> None:
        self._frames.append(msg)

    def take(self) -> list[can.Message]:
        """The frames received since the last call, in order."""
        popleft = self._frames.popleft
        return [popleft() for _ in range(len(self._frames))]

    def on_error(self, exc: Exception) -> None:  # keep listening: a bus hiccup must not end the drive
        pass


#: Wall seconds between two hand-overs of received frames to the pipeline (and silence checks).
TICK_WALL_S = 0.1


def run_live(bus: can.BusABC | None, pipeline: Pipeline, clock, stop: threading.Event, listeners=(),
             on_tick=None, tick_wall_s: float = TICK_WALL_S, gps=None) -> None:
    """Until ``stop`` is set: every ``tick_wall_s`` the frames received meanwhile go to the pipeline as a block,
    then the silence check and ``on_tick``. ``gps`` (a :class:`~firmware_bridge.sources.gps.GpsReceiver`)
    feeds its fixes after them; ``bus`` None: GPS only."""
    feeder = PipelineFeeder()
    notifier = can.Notifier(bus, [feeder, *listeners], timeout=0.05) if bus else None
    lock = threading.Lock()
    fixes: list = []

    def take_fix(frame) -> None:
        with lock:
            fixes.append(frame)

    def hand_over() -> None:
        pipeline.feed_messages(feeder.take())
        with lock:
            taken, fixes[:] = list(fixes), []
        for frame in taken:
            pipeline.feed_frame(frame)

    if gps is not None:
        gps.start(take_fix)
    try:
        while not stop.wait(tick_wall_s):
            hand_over()
            pipeline.tick(clock.now())
            if on_tick is not None:
                on_tick()
    finally:
        if gps is not None:
            gps.stop()
        if notifier is not None:
            notifier.stop()
        hand_over()
        pipeline.finish()
        if on_tick is not None:
            on_tick()
