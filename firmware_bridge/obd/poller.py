"""The OBD-II poller: asks the engine ECU for mode 01 PIDs at a bounded rate, only when enabled.

A car's bus is safety-critical, so the agent is passive unless polling is switched on, and then:
- supported PIDs are discovered from the 0x00/0x20/... bitmaps, never assumed;
- a fast schedule (speed, rpm, fuel inputs) and a slow one (temperatures, levels), most overdue first;
- a hard cap on requests per second (default 10) over everything, discovery included;
- each request waits for its answer up to a timeout; repeated silence means the bus is asleep: back off
  (1 s doubling to 30 s between probes) and rediscover when it wakes;
- while the engine is off (rpm 0, standing) only a slow probe of rpm is sent, to notice the restart.
Answers are not decoded here: they reach the pipeline like any other frame (the DBC decodes them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import can

from firmware_bridge.clock import RealClock
from firmware_bridge.obd import pids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollSettings:
    max_requests_per_s: float = 10.0
    fast_interval_s: float = 0.5
    slow_interval_s: float = 5.0
    response_timeout_s: float = 0.1
    request_id: int = pids.FUNCTIONAL_REQUEST_ID
    #: Unanswered requests in a row after which the bus counts as asleep.
    silence_after_misses: int = 5
    backoff_start_s: float = 1.0
    backoff_max_s: float = 30.0
    #: rpm 0 and standing this long: engine off, probe rpm every `engine_off_probe_s` only
    #: (an idle-stop engine restarts before the car moves, so the probe must be quick to notice).
    engine_off_after_s: float = 10.0
    engine_off_probe_s: float = 1.0


class PollSchedule:
    """Which PID to ask next: the most overdue of the fast and slow lists (ties: list order)."""

    def __init__(self, fast: list[int], slow: list[int], settings: PollSettings, now: float) -> None:
        self.interval = {pid: settings.fast_interval_s for pid in fast}
        self.interval.update({pid: settings.slow_interval_s for pid in slow})
        self.due = {pid: now for pid in (*fast, *slow)}

    def next_pid(self) -> int | None:
        return min(self.due, key=self.due.__getitem__) if self.due else None

    def done(self, pid: int, now: float) -> None:
        self.due[pid] = max(self.due[pid] + self.interval[pid], now)


class ObdPoller(can.Listener):
    """Runs in its own thread; give it to the bus's Notifier as a listener so it sees the answers."""

    def __init__(self, bus: can.BusABC, settings: PollSettings = PollSettings(), clock=None,
                 engine_rpm: Callable[[], float | None] = lambda: None,
                 speed_kmh: Callable[[], float | None] = lambda: None) -> None:
        self.bus = bus
        self.settings = settings
        self.clock = clock or RealClock()
        self.engine_rpm, self.speed_kmh = engine_rpm, speed_kmh
        self.supported: set[int] = set()
        self.requests_sent = 0
        self.responses = 0
        self.timeouts = 0
        self.asleep = False
        self._answer = threading.Event()
        self._waiting_for: int | None = None
        self._last_request_t = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine_off_since: float | None = None

    # -- can.Listener --------------------------------------------------------------------------------
    def on_message_received(self, msg: can.Message) -> None:
        pid = pids.response_pid(msg)
        if pid is not None and pid == self._waiting_for:
            self._last_answer = msg
            self._answer.set()

    # -- thread --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="obd-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _sleep(self, seconds: float) -> bool:
        """Sleep in car time; False when asked to stop."""
        return not self._stop.wait(seconds / self.clock.speedup)

    def ask(self, pid: int) -> can.Message | None:
        """One request under the rate cap; the answer or None after the timeout."""
        gap = 1.0 / self.settings.max_requests_per_s - (self.clock.now() - self._last_request_t)
        if gap > 0 and not self._sleep(gap):
            return None
        self._answer.clear()
        self._waiting_for = pid
        now = self.clock.now()
        self._last_request_t = now
        try:
            self.bus.send(pids.request(pid, self.settings.request_id, timestamp=now))
        except can.CanError as exc:  # e.g. ENOBUFS on a quiet SocketCAN bus: back off, never crash
            log.debug("OBD request 0x%02X not sent: %s", pid, exc)
            self._waiting_for = None
            return None
        self.requests_sent += 1
        answered = self._answer.wait(self.settings.response_timeout_s / self.clock.speedup)
        self._waiting_for = None
        if answered:
            self.responses += 1
            return self._last_answer
        self.timeouts += 1
        return None

    def discover(self) -> set[int]:
        """Walk the support bitmaps 0x00, 0x20, ... while each says the next one exists."""
        supported: set[int] = set()
        for base in pids.SUPPORT_BITMAP_PIDS:
            answer = self.ask(base)
            if answer is None:
                break
            supported |= pids.supported_from_bitmap(base, answer.data)
            if base + 0x20 not in supported:
                break
        return supported - set(pids.SUPPORT_BITMAP_PIDS)

    def _engine_off(self, now: float) -> bool:
        rpm, speed = self.engine_rpm(), self.speed_kmh()
        if rpm is None or rpm > 0 or (speed or 0) >= 1:
            self._engine_off_since = None
            return False
        if self._engine_off_since is None:
            self._engine_off_since = now
        return now - self._engine_off_since >= self.settings.engine_off_after_s

    def _run(self) -> None:
        backoff = self.settings.backoff_start_s
        while not self._stop.is_set():
            self.supported = self.discover()
            if not self.supported:
                self.asleep = True
                if not self._sleep(backoff):
                    return
                backoff = min(backoff * 2, self.settings.backoff_max_s)
                continue
            self.asleep = False
            backoff = self.settings.backoff_start_s
            fast, slow = pids.fast_and_slow(self.supported)
            log.info("OBD-II: %d PIDs supported; polling fast %s, slow %s", len(self.supported),
                     " ".join(f"{p:02X}" for p in fast), " ".join(f"{p:02X}" for p in slow))
            self._poll(PollSchedule(fast, slow, self.settings, self.clock.now()))

    def _poll(self, schedule: PollSchedule) -> None:
        """Poll until the bus goes silent (then the caller backs off and rediscovers) or stop."""
        misses = 0
        while not self._stop.is_set():
            now = self.clock.now()
            if self._engine_off(now):
                pid = pids.SPEED_RPM_PIDS[1]
                if not self._sleep(self.settings.engine_off_probe_s):
                    return
            else:
                pid = schedule.next_pid()
                wait = schedule.due[pid] - now
                if wait > 0 and not self._sleep(wait):
                    return
            answer = self.ask(pid)
            schedule.done(pid, self.clock.now())
            misses = 0 if answer is not None else misses + 1
            if misses >= self.settings.silence_after_misses:
                log.info("OBD-II: no answer to %d requests, bus asleep; backing off", misses)
                return
