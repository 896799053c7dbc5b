"""The bounded in-memory hand-off between the pipeline and the spool.

The bus thread must never wait for the disk: points go into a bounded queue and a writer thread commits them
to the spool in batches: ``flush_s`` after the first point of a batch, or sooner when a batch is full. The
analytics emit their points in one burst per second, so a short ``flush_s`` keeps frame-to-spool latency low
without adding commits (an SD card wears by commit count). If the disk cannot keep up and the
queue fills, points are dropped and counted (live); a replay has no deadline, so it waits instead.

A commit that fails (disk full, I/O error, the file deleted or made unwritable) never ends the writer: the
batch is kept and retried with back-off, what arrives meanwhile waits in the queue, and what does not fit is
dropped and counted (as is what the spool still refuses at shutdown) (a replay then stops waiting: the disk may never come back). When the disk works again
the writer carries on where it was. How long commits have failed tells the daemon whether to keep telling
systemd's watchdog that all is well.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from firmware_bridge.records import Point
from firmware_bridge.sinks.line_protocol import non_finite_fields, to_line
from firmware_bridge.spool.store import Spool

log = logging.getLogger(__name__)

#: Back-off between attempts at a failed commit: from the first value, doubling, up to the second.
RETRY_FIRST_S, RETRY_MAX_S = 0.1, 5.0


class SpoolWriter:
    def __init__(self, spool: Spool, on_commit: Callable[[], None], max_points: int = 100_000,
                 flush_s: float = 0.02, batch_points: int = 5000, block_when_full: bool = False) -> None:
        self.spool, self.on_commit = spool, on_commit
        self.flush_s, self.batch_points, self.block_when_full = flush_s, batch_points, block_when_full
        self._queue: queue.Queue[str | None] = queue.Queue(max_points)
        self.points_produced = 0  # every point handed to the spool
        self.overflow = 0         # dropped: the queue was full
        self.unsaved = 0          # dropped: still refused by the spool at shutdown
        self.points_committed = 0
        self.non_finite_fields = 0  # NaN/inf fields left out: InfluxDB would refuse their lines
        self.last_error: str | None = None
        self._failing_since: float | None = None
        self._failures = 0
        self._closing = threading.Event()
        self._close_deadline = 0.0
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self.overflow + self.unsaved

    def failing_for_s(self) -> float:
        """How long commits have been failing (0 while they work)."""
        return 0.0 if self._failing_since is None else time.monotonic() - self._failing_since

    def put(self, point: Point) -> None:
        self.non_finite_fields += non_finite_fields(point)
        line = to_line(point)
        if line is None:
            return
        self.points_produced += 1
        if self._closing.is_set() and not self._thread.is_alive():  # too late: counted, never silently lost
            self.unsaved += 1
            return
        while self.block_when_full and self._failing_since is None:
            try:
                self._queue.put(line, timeout=0.5)
                return
            except queue.Full:
                continue
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.overflow += 1

    def queued(self) -> int:
        return self._queue.qsize()

    def close(self, timeout_s: float = 10.0) -> None:
        """Commit everything queued, then stop the writer thread (what the spool refuses is counted as dropped)."""
        deadline = self._close_deadline = time.monotonic() + timeout_s
        self._closing.set()
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.2)
                break
            except queue.Full:  # the writer holds a batch the spool refuses: it sees _closing instead
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        batch: list[str] = []
        deadline = time.monotonic() + self.flush_s
        while True:
            failing = self._failing_since is not None
            timeout = max(0.0, deadline - time.monotonic())
            if failing and len(batch) >= self.batch_points:
                # a full batch waits for the spool: the rest stays in the queue, the memory bound
                line = None if self._closing.wait(timeout) else ""
            else:
                try:
                    line = self._queue.get(timeout=timeout)
                except queue.Empty:
                    line = None if self._closing.is_set() else ""
            if line:
                batch.append(line)
            if line is None or time.monotonic() >= deadline or (len(batch) >= self.batch_points and not failing):
                if batch and self._commit(batch):
                    batch = []
                deadline = time.monotonic() + (self._retry_s() if self._failing_since is not None else self.flush_s)
            if line is None:
                self._last_commits(batch)
                return

    def _last_commits(self, batch: list[str]) -> None:
        """At shutdown: what is still queued, committed (retried until close's deadline); the rest counted as
        dropped."""
        rest = batch + [line for line in iter(self._next_queued, None) if line]
        while rest:
            if self._commit(rest[:self.batch_points]):
                rest = rest[self.batch_points:]
            elif time.monotonic() + self._retry_s() < self._close_deadline:
                time.sleep(self._retry_s())
            else:
                break
        if rest:
            self.unsaved += len(rest)
            log.warning("spool %s: %d points could not be committed before shutdown (counted as dropped)",
                        self.spool.path, len(rest))

    def _next_queued(self) -> str | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _retry_s(self) -> float:
        return min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** max(0, self._failures - 1))

    def _commit(self, lines: list[str]) -> bool:
        """One attempt; False (and the batch kept) when the spool cannot be written."""
        try:
            self.spool.append(("\n".join(lines) + "\n").encode("utf-8"), len(lines))
        except Exception as exc:  # noqa: BLE001 - disk full, I/O error, file gone: the writer must live on
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._failures += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("spool %s: cannot commit (%s); retrying, and counting as dropped what does not fit "
                            "in memory meanwhile", self.spool.path, self.last_error)
            return False
        if self._failing_since is not None:
            log.warning("spool %s: commits work again after %.1f s (%d points dropped so far)", self.spool.path,
                        time.monotonic() - self._failing_since, self.dropped)
            self._failing_since, self._failures = None, 0
        self.points_committed += len(lines)
        self.on_commit()
        return True
