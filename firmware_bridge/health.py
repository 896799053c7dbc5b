"""The agent's own health as ``agent`` points: is it keeping up, is data waiting, is anything lost."""

from __future__ import annotations

import os

from firmware_bridge.records import Point


def rss_mb() -> float | None:
    """Resident memory of this process (Linux /proc), MB."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class AgentHealth:
    def __init__(self, pipeline, vehicle_id: str, bitrate: int | None = None, spool=None, spool_writer=None,
                 sender=None) -> None:
        self.pipeline, self.vehicle_id, self.bitrate = pipeline, vehicle_id, bitrate or 500_000
        self.spool, self.spool_writer, self.sender = spool, spool_writer, sender
        #: A live bus's :class:`~firmware_bridge.sources.live.BusHealth` (error frames, controller state);
        #: None in replay.
        self.bus = None
        self._last: tuple[float, int, int] | None = None  # (frame time, frames, bits)

    def point(self, t: float | None = None) -> Point | None:
        """The health point at frame time ``t`` (default: the newest frame's)."""
        t = self.pipeline.last_t if t is None else t
        if t is None:
            return None
        counts = self.pipeline.decoder.counts
        fields: dict[str, float | str] = {
            "frames_total": float(counts.total),
            "decode_errors": float(counts.unknown + counts.malformed),
            "unknown_frames": float(counts.unknown),
            "malformed_frames": float(counts.malformed),
        }
        frames, bits = counts.total, self.pipeline.bus_bits  # every frame read, error and unknown ones too
        if self.bus is not None:
            fields.update(bus_frames=float(frames), error_frames=float(self.bus.error_frames),
                          bus_off_count=float(self.bus.bus_off_count), bus_state=self.bus.state)
        if self._last is not None and t > self._last[0]:
            dt = t - self._last[0]
            fields["frames_per_s"] = (frames - self._last[1]) / dt
            fields["bus_load_pct"] = 100.0 * (bits - self._last[2]) / (self.bitrate * dt)
        self._last = (t, frames, bits)
        dropped = 0
        if self.spool is not None:
            batches, points, size = self.spool.depth()
            letters, letter_points, letter_bytes = self.spool.dead_letter_depth()
            fields.update(spool_batches=float(batches), spool_points=float(points), spool_bytes=float(size),
                          dead_letters=float(letters), dead_letter_points=float(letter_points),
                          dead_letter_bytes=float(letter_bytes))
            dropped += self.spool.counter("dropped_points")
        if self.spool_writer is not None:
            fields["queue_points"] = float(self.spool_writer.queued())
            fields["queue_overflow"] = float(self.spool_writer.overflow)
            fields["spool_unsaved_points"] = float(self.spool_writer.unsaved)
            fields["spool_failing_s"] = self.spool_writer.failing_for_s()
            fields["non_finite_fields"] = float(self.spool_writer.non_finite_fields)
            dropped += self.spool_writer.dropped
        if self.sender is not None:
            fields["points_sent"] = float(self.sender.points_sent)
            if self.sender.write_latency_s is not None:
                fields["write_latency_ms"] = 1000.0 * self.sender.write_latency_s
        fields["dropped_points"] = float(dropped)
        memory = rss_mb()
        if memory is not None:
            fields["rss_mb"] = memory
        return Point("agent", t, fields, {"vehicle": self.vehicle_id})
