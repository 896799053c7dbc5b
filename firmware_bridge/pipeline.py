"""The stages wired together: frames → decode → vehicle state → analytics (→ sinks).

One object for live buses, the simulator and log replay alike, so a drive gives the same numbers whichever
way its frames arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import can

from firmware_bridge.analytics.settings import AnalyticsSettings
from firmware_bridge.analytics.trip import Trip
from firmware_bridge.analytics.tracker import TripTracker
from firmware_bridge.decode.dbc import load_database
from firmware_bridge.decode.decoder import FrameDecoder
from firmware_bridge.decode.live import LiveDecoder
from firmware_bridge.obd.isotp import ObdAnswers
from firmware_bridge.records import DecodedFrame, Sample
from firmware_bridge.sources.gps import GpsCounts
from firmware_bridge.state.vehicle import VehicleState, check_signal_map, load_signal_map
from firmware_bridge.vehicles import VehicleProfile, load_vehicle


@dataclass
class PipelineOptions:
    dbc_files: list[str] = field(default_factory=list)
    vehicle: str | None = None
    signal_map: str | None = None
    settings: AnalyticsSettings = field(default_factory=AnalyticsSettings)


#: Bits on the wire besides the data, without stuffing: an 11-bit frame, a 29-bit one (for the bus load).
OVERHEAD_BITS_11, OVERHEAD_BITS_29 = 47, 67


class Pipeline:
    """Feeds frames through decode, vehicle state and trip analytics; listeners see samples and trips."""

    def __init__(self, options: PipelineOptions | None = None) -> None:
        options = options or PipelineOptions()
        self.profile: VehicleProfile = load_vehicle(options.vehicle)
        # The car's DBCs first, so a user's --dbc overrides a frame ID the car's files define.
        database = load_database([*self.profile.dbc, *options.dbc_files])
        for routes in (self.profile.signal_map, options.signal_map):
            if routes is not None:
                check_signal_map(routes, database)
        self.state = VehicleState(load_signal_map(options.signal_map, self.profile.signal_map))
        # Frames are decoded by layouts compiled for the signals the state uses (identical to cantools, tested).
        self.decoder: LiveDecoder | FrameDecoder = LiveDecoder(database, self.state.wanted_signals())
        self.tracker = TripTracker(options.settings, self.profile)
        self.tracker.times = self.state.times
        self.sample_listeners: list[Callable[[Sample, dict[str, float]], None]] = []
        self.trip_listeners: list[Callable[[Trip], None]] = []
        self.frame_listeners: list[Callable[[DecodedFrame], None]] = []
        # Owners of sample listeners that also take a replayed stretch of samples at once (``due_t`` and
        # ``on_stretch``, see analytics/fastforward.py): replay fast-forwards only when every listener is one.
        self.stretch_listeners: list = []
        self.obd_answers = ObdAnswers()  # multi-frame / multi-PID OBD-II answers -> single-PID frames
        self.last_t: float | None = None  # newest frame time: the agent's clock for its own points
        self.gps_counts = GpsCounts()  # GPS fixes used and left out (NMEA logs, gpsd, a serial receiver)
        self.bus_bits = 0

    def feed(self, msg: can.Message) -> None:
        self.last_t = msg.timestamp
        self.bus_bits += (OVERHEAD_BITS_29 if msg.is_extended_id else OVERHEAD_BITS_11) + 8 * len(msg.data)
        parts = self.obd_answers.split(msg)
        if parts is None:
            self._decode(msg)
        else:
            for part in parts:
                self._decode(part)

    def _decode(self, msg: can.Message) -> None:
        frame = self.decoder.decode_all(msg) if self.frame_listeners else self.decoder.decode(msg)
        if frame is not None:
            self.feed_frame(frame)

    def feed_frame(self, frame: DecodedFrame) -> None:
        """A decoded frame into the state and the analytics (log replay decodes whole blocks, then calls this)."""
        for listener in self.frame_listeners:
            listener(frame)
        values = self.state.values
        for sample in self.state.update(frame):
            closed = self.tracker.feed(sample, values)
            for listener in self.sample_listeners:
                listener(sample, values)
            if closed is not None:
                self._trip_done(closed)

    def feed_all(self, messages: Iterable[can.Message]) -> None:
        feed = self.feed
        for msg in messages:
            feed(msg)

    def tick(self, now: float) -> None:
        """Live mode, called periodically: closes a trip after bus silence."""
        closed = self.tracker.tick(now)
        if closed is not None:
            self._trip_done(closed)

    def finish(self) -> None:
        closed = self.tracker.close()
        if closed is not None:
            self._trip_done(closed)

    def _trip_done(self, trip: Trip) -> None:
        for listener in self.trip_listeners:
            listener(trip)

    @property
    def trips(self) -> list[Trip]:
        return self.tracker.finished

    def stats(self, malformed_lines: int = 0) -> dict:
        """The stats JSON (DESIGN §3)."""
        frames = self.decoder.counts.as_dict()
        frames["total"] += malformed_lines
        frames["malformed"] += malformed_lines
        trips = self.trips
        total = Trip(trips[0].start, self.tracker.settings) if trips else None
        for trip in trips:
            total.absorb(trip)
        stats = {"frames": frames, "trips": [t.summary() for t in trips], "total": total.summary() if total else None}
        if any(self.gps_counts.as_dict().values()):
            stats["gps"] = self.gps_counts.as_dict()
        return stats
