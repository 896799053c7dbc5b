"""The bounded in-memory hand-off between the pipeline and the spool.

The bus thread must never wait for the disk: points go into a bounded queue and a writer thread commits them
to the spool in batches: ``flush_s`` after the first point of a batch, or sooner when a batch is full. The
analytics emit their points in one burst per second, so a short ``flush_s`` keeps frame-to-spool latency low
without adding commits (an SD card wears by commit count). If the disk cannot keep up and the
queue fills, points are dropped and counted (live); a replay has no deadline, so it waits instead.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from firmware_bridge.records import Point
from firmware_bridge.sinks.line_protocol import to_line
from firmware_bridge.spool.store import Spool


class SpoolWriter:
    def __init__(self, spool: Spool, on_commit: Callable[[], None], max_points: int = 100_000,
                 flush_s: float = 0.02, batch_points: int = 5000, block_when_full: bool = False) -> None:
        self.spool, self.on_commit = spool, on_commit
        self.flush_s, self.batch_points, self.block_when_full = flush_s, batch_points, block_when_full
        self._queue: queue.Queue[str | None] = queue.Queue(max_points)
        self.overflow = 0
        self.points_committed = 0
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def put(self, point: Point) -> None:
        if not point.fields:
            return
        line = to_line(point)
        if self.block_when_full:
            self._queue.put(line)
            return
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.overflow += 1

    def queued(self) -> int:
        return self._queue.qsize()

    def close(self, timeout_s: float = 10.0) -> None:
        """Commit everything queued, then stop the writer thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        batch: list[str] = []
        deadline = time.monotonic() + self.flush_s
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line:
                batch.append(line)
            if line is None or len(batch) >= self.batch_points or time.monotonic() >= deadline:
                if batch:
                    self._commit(batch)
                    batch = []
                deadline = time.monotonic() + self.flush_s
            if line is None:
                return

    def _commit(self, lines: list[str]) -> None:
        self.spool.append(("\n".join(lines) + "\n").encode("utf-8"), len(lines))
        self.points_committed += len(lines)
        self.on_commit()
