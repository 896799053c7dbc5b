"""The live loop: python-can's Notifier delivers frames to the pipeline (and to the OBD poller)."""

from __future__ import annotations

import threading

import can

from firmware_bridge.pipeline import Pipeline


class PipelineFeeder(can.Listener):
    """Hands received frames to the pipeline; the lock keeps the periodic tick out of a frame's way."""

    def __init__(self, pipeline: Pipeline, lock: threading.Lock) -> None:
        self.pipeline, self.lock = pipeline, lock

    def on_message_received(self, msg: can.Message) -> None:
        with self.lock:
            self.pipeline.feed(msg)

    def on_error(self, exc: Exception) -> None:  # keep listening: a bus hiccup must not end the drive
        pass


def run_live(bus: can.BusABC | None, pipeline: Pipeline, clock, stop: threading.Event, listeners=(),
             on_tick=None, tick_wall_s: float = 0.25, gps=None) -> None:
    """Until ``stop`` is set: frames to the pipeline, and every ``tick_wall_s`` a silence check and ``on_tick``.
    ``gps`` (a :class:`~firmware_bridge.sources.gps.GpsReceiver`) feeds its fixes too; ``bus`` None: GPS only."""
    lock = threading.Lock()
    notifier = can.Notifier(bus, [PipelineFeeder(pipeline, lock), *listeners], timeout=0.05) if bus else None

    def feed_fix(frame) -> None:
        with lock:
            pipeline.feed_frame(frame)

    if gps is not None:
        gps.start(feed_fix)
    try:
        while not stop.wait(tick_wall_s):
            with lock:
                pipeline.tick(clock.now())
                if on_tick is not None:
                    on_tick()
    finally:
        if gps is not None:
            gps.stop()
        if notifier is not None:
            notifier.stop()
        with lock:
            pipeline.finish()
            if on_tick is not None:
                on_tick()
