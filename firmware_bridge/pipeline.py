"""The stages wired together: blocks of frames → decode → vehicle state → trip segments → analytics (→ sinks).

One object for live buses, the simulator and log replay alike, so a drive gives the same numbers whichever
way its frames arrive.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import can

from firmware_bridge.analytics.settings import AnalyticsSettings
from firmware_bridge.analytics.trip import Trip
from firmware_bridge.analytics.tracker import TripTracker
from firmware_bridge.decode.dbc import load_database
from firmware_bridge.decode.decoder import Decoder, FrameCounts
from firmware_bridge.obd.isotp import ObdAnswers
from firmware_bridge.records import DecodedFrame, FrameBlock, SampleBlock, Segment, block_of_messages
from firmware_bridge.sources.gps import GpsCounts
from firmware_bridge.state.vehicle import VehicleState, check_signal_map, load_signal_map
from firmware_bridge.vehicles import VehicleProfile, load_vehicle


@dataclass
class PipelineOptions:
    dbc_files: list[str] = field(default_factory=list)
    vehicle: str | None = None
    signal_map: str | None = None
    settings: AnalyticsSettings = field(default_factory=AnalyticsSettings)


#: Frames per block when messages are handed over one list at a time (live ticks, the simulator).
MESSAGE_BLOCK_FRAMES = 4096


class Pipeline:
    """Feeds blocks of frames through decode, vehicle state and trip analytics; listeners see segments of
    samples, finished trips and (when asked for raw signals) decoded frames.

    A block is whatever arrives together: a few MB of a log, or the frames a live bus gave during one tick.
    Every stage works on whole blocks, and a drive gives the same figures and points however it is cut.
    """

    def __init__(self, options: PipelineOptions | None = None) -> None:
        options = options or PipelineOptions()
        self.profile: VehicleProfile = load_vehicle(options.vehicle)
        # The car's DBCs first, so a user's --dbc overrides a frame ID the car's files define.
        database = load_database([*self.profile.dbc, *options.dbc_files])
        for routes in (self.profile.signal_map, options.signal_map):
            if routes is not None:
                check_signal_map(routes, database)
        self.obd_answers = ObdAnswers()  # multi-frame / multi-PID OBD-II answers -> single-PID frames
        self.use_state(VehicleState(load_signal_map(options.signal_map, self.profile.signal_map)), database)
        self.tracker = TripTracker(options.settings, self.profile)
        self.segment_listeners: list[Callable[[Segment], None]] = []
        #: Listeners' next due times (``None``: none): a segment ends at the first sample at or after the earliest.
        self.due_listeners: list[Callable[[], float | None]] = []
        self.trip_listeners: list[Callable[[Trip], None]] = []
        self.frame_listeners: list[Callable[[DecodedFrame], None]] = []
        #: Every frame read, as blocks, before decoding (a live bus's error frames, for its health).
        self.block_listeners: list[Callable[[FrameBlock], None]] = []
        self.last_t: float | None = None  # newest frame time: the agent's clock for its own points
        self.gps_counts = GpsCounts()  # GPS fixes used and left out (NMEA logs, gpsd, a serial receiver)
        self.bus_bits = 0

    def use_state(self, state: VehicleState, database, counts: FrameCounts | None = None) -> None:
        """Read frames with this vehicle state (its signal map) and database from now on; ``counts`` carries
        the frame counts over."""
        self.state = state
        # Frames are decoded by layouts compiled for the signals the state uses (identical to cantools, tested).
        self.decoder = Decoder(database, state.wanted_signals(), self.obd_answers)
        if counts is not None:
            self.decoder.counts = counts

    def feed_block(self, block: FrameBlock) -> None:
        """A block of frames, in the order they were read."""
        if not len(block):
            return
        for listener in self.block_listeners:
            listener(block)
        decoded = self.decoder.decode(block, every_signal=bool(self.frame_listeners))
        if self.frame_listeners:
            for frame in decoded.frames():
                for listener in self.frame_listeners:
                    listener(frame)
        self.last_t = float(block.t[-1])
        self.bus_bits += block.wire_bits()
        self._analyse(self.state.accept_decoded(decoded))

    def feed_messages(self, messages: Iterable[can.Message]) -> None:
        """python-can messages (a live bus's, the simulator's), in blocks."""
        frames = iter(messages)
        while chunk := list(itertools.islice(frames, MESSAGE_BLOCK_FRAMES)):
            self.feed_block(block_of_messages(chunk))

    def feed_frame(self, frame: DecodedFrame) -> None:
        """A frame decoded elsewhere (a GPS fix)."""
        for listener in self.frame_listeners:
            listener(frame)
        self.last_t = frame.t
        self._analyse(self.state.accept_frames([frame]))

    def _analyse(self, samples: SampleBlock) -> None:
        if len(samples):
            self.tracker.feed(samples, self._segment_done, self._trip_done, self._due_t)

    def _segment_done(self, segment: Segment) -> None:
        for listener in self.segment_listeners:
            listener(segment)

    def _due_t(self) -> float | None:
        due = [t for listener in self.due_listeners if (t := listener()) is not None]
        return min(due) if due else None

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
        """The stats JSON: frame counts, each trip's summary and their total."""
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
