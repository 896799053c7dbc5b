"""Where a command's points go: a line-protocol file, InfluxDB through the durable spool, or both.

Every point for InfluxDB is committed to the spool before any network write; a sender thread drains it.
On close, queued points are committed, and the sender gets a few seconds (live) or as long as it needs
(replay, unless the server refuses us) to deliver what is spooled; what it cannot deliver stays spooled for
the next start.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from firmware_bridge.analytics.points import PointEmitter
from firmware_bridge.errors import RunError
from firmware_bridge.health import AgentHealth
from firmware_bridge.records import Point
from firmware_bridge.sinks.influx import InfluxTarget, make_writer
from firmware_bridge.sinks.line_protocol import LineProtocolFile
from firmware_bridge.spool.queue import SpoolWriter
from firmware_bridge.spool.sender import Sender
from firmware_bridge.spool.store import Spool

log = logging.getLogger(__name__)

SINK_NAME = "influx"

#: A daemon whose server refused everything (credentials, no database) looks again this often.
STOPPED_RECHECK_S = 300.0


def default_state_dir() -> Path:
    """systemd's StateDirectory when run as a service, else the XDG state directory."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "firmware-bridge"


def open_spool(path: Path, **bounds) -> Spool:
    """The spool, or one line saying why it cannot be opened (exit 1): nothing is read or sent without it."""
    try:
        return Spool(path, [SINK_NAME], **bounds)
    except (sqlite3.Error, OSError) as exc:
        raise RunError(f"cannot open the spool {path}: {exc}") from None


def influx_target(config: dict) -> InfluxTarget | None:
    influx = config["influx"]
    if not influx["url"]:
        return None
    return InfluxTarget(url=influx["url"], api=influx["api"], org=influx["org"], bucket=influx["bucket"],
                        token=influx.get("token", ""), timeout_s=float(influx["timeout_s"]))


class AgentSchedule:
    """The agent's health point every ``interval_s`` of frame time (live and replay alike)."""

    def __init__(self, pipeline, health: AgentHealth, emit, interval_s: float) -> None:
        self.health, self.emit, self.interval_s = health, emit, interval_s
        self._next_t: float | None = None
        pipeline.segment_listeners.append(self.on_segment)

    def on_segment(self, segment) -> None:
        """A point at each sample that is ``interval_s`` after the last point's (the first sample starts it)."""
        times, start = segment.t, 0
        if self._next_t is None:
            self._next_t = float(times[0]) + self.interval_s
            start = 1
        while start < len(times):
            due = times[start:] >= self._next_t
            at = int(np.argmax(due))
            if not due[at]:
                break
            t = float(times[start + at])
            self._next_t = t + self.interval_s
            point = self.health.point(t)  # the sample's time: a replayed block's points stay apart
            if point is not None:
                self.emit(point)
            start += at + 1


class Outputs:
    def __init__(self, pipeline, config: dict, vehicle_id: str, replay: bool = False,
                 bitrate: int | None = None) -> None:
        out = config["output"]
        self.sinks = []
        self.file = LineProtocolFile(out["line_protocol"]) if out["line_protocol"] else None
        if self.file is not None:
            self.sinks.append(self.file.write)
        self.target = influx_target(config)
        self.spool = self.spool_writer = self.sender = None
        self.undelivered: str | None = None  # after close: why not every point reached the server
        if self.target is not None:
            spool_cfg = config["spool"]
            path = spool_cfg["path"] or default_state_dir() / ("replay-spool.db" if replay else "spool.db")
            self.spool = open_spool(path, max_bytes=int(spool_cfg["max_mb"] * 2**20),
                                    max_age_s=spool_cfg["max_age_days"] * 86400)
            self.sender = Sender(self.spool, SINK_NAME, make_writer(self.target),
                                 recheck_s=None if replay else STOPPED_RECHECK_S)
            self._dropped_before = self.spool.counter("dropped_points")
            self.spool_writer = SpoolWriter(self.spool, self.sender.wake, max_points=spool_cfg["queue_points"],
                                            flush_s=spool_cfg["flush_s"], batch_points=spool_cfg["batch_points"],
                                            block_when_full=replay)
            self.sinks.append(self.spool_writer.put)
            self.sender.start()
        self.emitter = PointEmitter(pipeline, self.emit, vehicle_id, out["interval_s"], out["trip_update_s"],
                                    out["raw_signals"]) if self.sinks else None
        self.health = AgentHealth(pipeline, vehicle_id, bitrate, self.spool, self.spool_writer, self.sender)
        if self.sinks:
            AgentSchedule(pipeline, self.health, self.emit, out["agent_interval_s"])

    def _spool_summary(self) -> list[str]:
        """What reached the server, what waits, what was set aside or lost; sets ``undelivered``."""
        _, waiting, _ = self.spool.depth()
        letters, letter_points, _ = self.spool.dead_letter_depth()
        dropped = self.spool.counter("dropped_points") - self._dropped_before + self.spool_writer.dropped
        parts = [f"{self.sender.points_sent} points sent to {self.target.describe()}"
                 + (f", {waiting} still spooled in {self.spool.path}" if waiting else "")]
        if letters:
            parts.append(f"{letter_points} points in {letters} dead letters (firmware-bridge spool dead-letters)")
        if dropped:
            parts.append(f"{dropped} points dropped (spool bound, queue overflow or spool not writable"
                         + (f": {self.spool_writer.last_error}" if self.spool_writer.last_error else "") + ")")
        if waiting or dropped or self.sender.points_refused:
            reason = self.sender.stopped_error or self.sender.last_error or self.spool_writer.last_error
            self.undelivered = (f"{waiting} points still spooled, {self.sender.points_refused} refused by the server, "
                                f"{dropped} dropped" + (f": {reason}" if reason else ""))
        return parts

    def describe(self) -> list[str]:
        where = []
        if self.file is not None:
            where.append(f"line protocol to {self.file.path}")
        if self.target is not None:
            where.append(f"{self.target.describe()} through the spool {self.spool.path}")
        return where

    def emit(self, point: Point) -> None:
        for sink in self.sinks:
            sink(point)

    def spool_failing_s(self) -> float:
        """How long the spool has refused commits (0 when it works or there is none)."""
        return self.spool_writer.failing_for_s() if self.spool_writer is not None else 0.0

    @property
    def auth_error(self) -> str | None:
        """The server refused our credentials (a configuration error, exit 2)."""
        if self.sender is not None and self.sender.stopped_status in (401, 403):
            return self.sender.stopped_error
        return None

    def close(self, drain_stall_s: float = 3.0) -> str:
        """Flush everything; returns a one-line summary of what went where.

        The sender keeps draining while it makes progress; after ``drain_stall_s`` without a delivered batch
        (server down, credentials refused) the rest stays spooled for the next start.
        """
        if self.emitter is not None:
            self.emitter.flush()
        if self.sinks:
            point = self.health.point()
            if point is not None:
                self.emit(point)
        parts = []
        if self.file is not None:
            self.file.close()
            parts.append(f"{self.file.points_written} points written to {self.file.path}")
        if self.spool_writer is not None:
            self.spool_writer.close()
            sent, progress_at = self.sender.points_sent, time.monotonic()
            while not self.sender.idle() and time.monotonic() - progress_at < drain_stall_s:
                time.sleep(0.05)
                if self.sender.points_sent != sent:
                    sent, progress_at = self.sender.points_sent, time.monotonic()
            self.sender.stop()
            parts += self._spool_summary()
            self.spool.close()
        non_finite = sum(sink.non_finite_fields for sink in (self.file, self.spool_writer) if sink is not None)
        if non_finite:
            parts.append(f"{non_finite} NaN or infinite field values left out (InfluxDB refuses them)")
        return "; ".join(parts)
