"""Helpers of the fault-injection tests: a small real filesystem to fill, faults injected into the spool, and the
count every test ends with: points produced = delivered + still spooled + dead-lettered + counted as dropped."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_bridge.records import Point
from firmware_bridge.sinks.influx import InfluxTarget, make_writer
from firmware_bridge.spool.queue import SpoolWriter
from firmware_bridge.spool.sender import Sender
from firmware_bridge.spool.store import Spool

T0 = 1775034000.0


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "2m"):
    """A real tmpfs of ``size`` at ``where`` (root only); the test is skipped where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'}): disk-full test skipped")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; returns the bytes written."""
    written = 0
    try:
        f = open(path, "wb")
    except OSError as exc:  # already full
        assert exc.errno == errno.ENOSPC
        return 0
    with contextlib.suppress(OSError), f:  # closing flushes what did not fit: ENOSPC again
        block = b"\0" * 65536
        try:
            while True:
                f.write(block)
                f.flush()
                written += len(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        with contextlib.suppress(OSError):
            for _ in range(64):  # the last partial block
                f.write(b"\0" * 1024)
                f.flush()
    return written


class FaultySpool(Spool):
    """A real spool whose next commits or reads fail as SQLite reports a full disk or an I/O error."""

    fail_appends = 0
    fail_reads = 0
    error = "database or disk is full"

    def append(self, lines, points):
        if self.fail_appends:
            self.fail_appends -= 1
            raise sqlite3.OperationalError(self.error)
        return super().append(lines, points)

    def oldest(self, sink):
        if self.fail_reads:
            self.fail_reads -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return super().oldest(sink)


@dataclass
class Agent:
    """The spool's three parts, as Outputs wires them, writing to a real server."""

    spool: Spool
    writer: SpoolWriter
    sender: Sender
    carried: int = 0  # points already spooled when it started (a restart)

    @classmethod
    def start(cls, path, url, db, spool_class=Spool, queue_points=100_000, batch_points=50, **spool_options):
        spool = spool_class(path, ["influx"], **spool_options)
        sender = Sender(spool, "influx", make_writer(InfluxTarget(url=url, api="v1", bucket=db)),
                        backoff_start_s=0.05, backoff_max_s=0.5)
        writer = SpoolWriter(spool, sender.wake, max_points=queue_points, flush_s=0.01, batch_points=batch_points)
        carried = spool.depth()[1]
        sender.start()
        return cls(spool, writer, sender, carried)

    def produce(self, start: int, count: int, pause_s: float = 0.0) -> None:
        for i in range(start, start + count):
            self.writer.put(Point("m", T0 + i / 1000, {"v": float(i)}, {"vehicle": "kei"}))
            if pause_s:
                time.sleep(pause_s)

    def wait_committed(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.writer.queued() and time.monotonic() < deadline:
            time.sleep(0.02)

    def finish(self, drain_s: float = 30.0) -> dict:
        self.writer.close()
        deadline = time.monotonic() + drain_s
        while not self.sender.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.sender.stop()
        counts = account(self.spool, self.writer, self.sender, self.carried)
        self.spool.close()
        return counts


def account(spool, writer, sender, carried: int = 0) -> dict:
    """Where every point went; asserts that they add up (``carried``: spooled before this run began)."""
    counts = {"produced": writer.points_produced + carried, "delivered": sender.points_sent, "spooled": spool.depth()[1],
              "dead_lettered": spool.dead_letter_depth()[1],
              "dropped": writer.dropped + spool.counter("dropped_points")}
    assert counts["produced"] == counts["delivered"] + counts["spooled"] + counts["dead_lettered"] + \
        counts["dropped"], counts
    return counts


def count_in(influx, db, measurement="m", field="v") -> int:
    rows = influx.rows(f'SELECT count("{field}") FROM "{measurement}"', db)
    return rows[0]["count"] if rows else 0


def spool_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def remove_spool(path: Path) -> None:
    for p in spool_files(path):
        os.unlink(p)
