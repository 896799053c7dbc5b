"""Drains the spool to one sink, oldest batch first, deleting only what the server acknowledged.

Network and TLS errors, 5xx and 429 retry with exponential back-off and full jitter (honouring Retry-After);
413 (too large) splits the batch in halves and sends each; lines a server refused for good (a 400 partial
write) go to the dead-letter table, only they; 401/403 (credentials) and 404 (no such database or bucket) stop
this sender with one clear error and keep everything spooled. A daemon looks again after ``recheck_s``, since a
person may create the database or fix the token meanwhile; a replay or a flush stops for good.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from firmware_bridge.sinks.influx import REJECT, RETRY, SPLIT, STOP, WriteError
from firmware_bridge.spool.store import Spool

log = logging.getLogger(__name__)


class Sender:
    def __init__(self, spool: Spool, name: str, writer, backoff_start_s: float = 1.0,
                 backoff_max_s: float = 60.0, rng: random.Random | None = None,
                 recheck_s: float | None = None) -> None:
        self.spool, self.name, self.writer = spool, name, writer
        self.backoff_start_s, self.backoff_max_s, self.recheck_s = backoff_start_s, backoff_max_s, recheck_s
        self._rng = rng or random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped_error: str | None = None  # set when the server refuses everything (401, 403, 404)
        self.stopped_status: int | None = None
        self.last_error: str | None = None
        self.points_sent = 0
        self.points_refused = 0  # set aside as dead letters
        self.write_latency_s: float | None = None
        self.failures = 0

    def wake(self) -> None:
        """New batches are in the spool."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"sender-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def idle(self) -> bool:
        """Nothing left for this sink, or it cannot send any more."""
        return self.stopped_error is not None or self.spool.pending_batches(self.name) == 0

    def send_one(self) -> bool:
        """Try the oldest batch once. True if the spool moved on (sent or set aside), False otherwise."""
        batch = self.spool.oldest(self.name)
        if batch is None:
            return False
        started = time.monotonic()
        try:
            refused = self._deliver(batch.lines.splitlines(keepends=True))
        except WriteError as exc:
            self.last_error = str(exc)
            if exc.kind == STOP:
                self.stopped_error, self.stopped_status = f"{self.name}: {exc}; points stay spooled", exc.status
                log.error("%s", self.stopped_error)
            raise
        self.write_latency_s = time.monotonic() - started
        for _, points, error in refused:
            log.warning("%s refused %d of %d points for good (kept as a dead letter): %s", self.name, points,
                        batch.points, error)
        self.spool.acknowledge(self.name, batch.id, refused)
        refused_points = sum(points for _, points, _ in refused)
        self.points_sent += batch.points - refused_points
        self.points_refused += refused_points
        self.failures = 0
        return True

    def _deliver(self, lines: list[bytes]) -> list[tuple[bytes, int, str]]:
        """Write the lines; on 413 each half the same way. Returns the parts refused for good."""
        body = b"".join(lines)
        try:
            self.writer.write(body)
            return []
        except WriteError as exc:
            if exc.kind == REJECT or exc.kind == SPLIT and len(lines) == 1:
                return [(body, len(lines), str(exc))]
            if exc.kind != SPLIT:
                raise
        half = len(lines) // 2
        return self._deliver(lines[:half]) + self._deliver(lines[half:])

    def _backoff_s(self, exc: WriteError) -> float:
        self.failures += 1
        ceiling = min(self.backoff_max_s, self.backoff_start_s * 2 ** (self.failures - 1))
        delay = self._rng.uniform(0, ceiling)  # full jitter: many agents never retry in step
        if exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
        return delay

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.send_one():
                    continue
            except WriteError as exc:
                if exc.kind == STOP:
                    if self.recheck_s is None or self._stop.wait(self.recheck_s):
                        return
                    self.stopped_error = self.stopped_status = None  # look again
                    continue
                delay = self._backoff_s(exc)
                log.info("%s: %s; retrying in %.1f s", self.name, exc, delay)
                self._stop.wait(delay)
                continue
            except Exception as exc:  # noqa: BLE001 - the spool unreadable (I/O error, file gone): try again
                self.last_error = f"spool: {type(exc).__name__}: {exc}"
                delay = self._backoff_s(WriteError(RETRY, self.last_error))
                log.warning("%s: cannot read the spool (%s); retrying in %.1f s", self.name, exc, delay)
                self._stop.wait(delay)
                continue
            self._wake.wait(1.0)
            self._wake.clear()
