"""The live loop: python-can's Notifier delivers frames to the pipeline (and to the OBD poller), and every frame
the interface delivers is counted for the bus health figures before any decoding."""

from __future__ import annotations

import logging
import threading

import can

from firmware_bridge.pipeline import OVERHEAD_BITS_11, OVERHEAD_BITS_29, Pipeline

log = logging.getLogger(__name__)

#: SocketCAN error frame classes (linux/can/error.h), in the error frame's ID, and the controller-problem
#: details in its data byte 1.
CAN_ERR_CRTL, CAN_ERR_BUSOFF, CAN_ERR_RESTARTED = 0x00000004, 0x00000040, 0x00000100
CAN_ERR_CRTL_WARNING, CAN_ERR_CRTL_PASSIVE, CAN_ERR_CRTL_ACTIVE = 0x04 | 0x08, 0x10 | 0x20, 0x40
#: Controller states as the ``agent`` point's ``bus_state`` field gives them.
ACTIVE, WARNING, PASSIVE, BUS_OFF = "error_active", "error_warning", "error_passive", "bus_off"
_PYTHON_CAN_STATES = {can.BusState.ACTIVE: ACTIVE, can.BusState.PASSIVE: PASSIVE, can.BusState.ERROR: BUS_OFF}


class BusHealth(can.Listener):
    """Every frame the interface delivers (decodable or not): frames and bits for frames/s and bus load, error
    frames, bus-off events and the controller state, from SocketCAN error frames and from python-can's
    ``bus.state`` where the interface reports one. A bus-off is one journal WARNING."""

    def __init__(self, bus: can.BusABC | None = None, name: str = "the CAN bus") -> None:
        self.bus, self.name = bus, name
        self.frames = self.bits = self.error_frames = self.bus_off_count = 0
        self.state = ACTIVE
        self._reported = None  # the last state python-can's bus.state gave

    def on_message_received(self, msg: can.Message) -> None:
        self.frames += 1
        if msg.is_error_frame:
            self.error_frames += 1
            self._error_frame(msg)
        else:
            self.bits += (OVERHEAD_BITS_29 if msg.is_extended_id else OVERHEAD_BITS_11) + 8 * len(msg.data)

    def _error_frame(self, msg: can.Message) -> None:
        error_class = msg.arbitration_id
        if error_class & CAN_ERR_BUSOFF:
            self._set(BUS_OFF)
        elif error_class & CAN_ERR_RESTARTED:
            self._set(ACTIVE)
        elif error_class & CAN_ERR_CRTL and len(msg.data) > 1:
            detail = msg.data[1]
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

    def on_error(self, exc: Exception) -> None:
        """The Notifier's error hook: counted by the pipeline feeder, nothing to add here."""


class PipelineFeeder(can.Listener):
    """Collects the frames python-can's Notifier receives; every tick hands them to the pipeline as one block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: list[can.Message] = []

    def on_message_received(self, msg: can.Message) -> None:
        with self._lock:
            self._frames.append(msg)

    def take(self) -> list[can.Message]:
        """The frames received since the last call, in order."""
        with self._lock:
            frames, self._frames = self._frames, []
        return frames

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
