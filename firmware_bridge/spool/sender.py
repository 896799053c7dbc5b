"""Drains the spool to one sink, oldest batch first, deleting only what the server acknowledged.

Network errors, 5xx and 429 retry with exponential back-off and full jitter (honouring Retry-After); a
rejected batch (400) goes to the dead-letter table; 401/403 stop this sender with one clear error and keep
everything spooled for when the credentials are fixed.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from firmware_bridge.sinks.influx import AUTH, REJECT, WriteError
from firmware_bridge.spool.store import Spool

log = logging.getLogger(__name__)


class Sender:
    def __init__(self, spool: Spool, name: str, writer, backoff_start_s: float = 1.0,
                 backoff_max_s: float = 60.0, rng: random.Random | None = None) -> None:
        self.spool, self.name, self.writer = spool, name, writer
        self.backoff_start_s, self.backoff_max_s = backoff_start_s, backoff_max_s
        self._rng = rng or random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped_error: str | None = None  # set when credentials were refused
        self.last_error: str | None = None
        self.points_sent = 0
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
            self.writer.write(batch.lines)
        except WriteError as exc:
            self.last_error = str(exc)
            if exc.kind == REJECT:
                log.warning("%s rejected a batch of %d points (kept in dead_letter): %s", self.name, batch.points, exc)
                self.spool.dead_letter(self.name, batch.id, str(exc))
                return True
            if exc.kind == AUTH:
                self.stopped_error = f"{self.name}: credentials refused ({exc}); points stay spooled"
                log.error("%s", self.stopped_error)
            raise
        self.write_latency_s = time.monotonic() - started
        self.spool.acknowledge(self.name, batch.id)
        self.points_sent += batch.points
        self.failures = 0
        return True

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
                if exc.kind == AUTH:
                    return
                delay = self._backoff_s(exc)
                log.info("%s: %s; retrying in %.1f s", self.name, exc, delay)
                self._stop.wait(delay)
                continue
            except Exception as exc:  # noqa: BLE001 - the spool unreadable (I/O error, file gone): try again
                self.last_error = f"spool: {type(exc).__name__}: {exc}"
                delay = self._backoff_s(WriteError("retry", self.last_error))
                log.warning("%s: cannot read the spool (%s); retrying in %.1f s", self.name, exc, delay)
                self._stop.wait(delay)
                continue
            self._wake.wait(1.0)
            self._wake.clear()
