"""The OBD-II poller: asks the engine ECU for mode 01 PIDs at a bounded rate, only when enabled.

A car's bus is safety-critical, so the agent is passive unless polling is switched on, and then:
- supported PIDs are discovered from the 0x00/0x20/... bitmaps, never assumed;
- a fast schedule (speed, rpm, fuel inputs) and a slow one (temperatures, levels), most overdue first;
- a hard cap on requests per second (default 10) over everything, discovery included;
- PIDs due together go in one request (up to 6, SAE J1979) where the bus makes round trips dear (an ELM327:
  30-60 ms each) or the settings ask for it; a PID the ECU leaves out of two multi-PID answers in a row is
  asked alone for a while (`regroup_after_s`), and a group nobody answers is retried as one PID to tell an
  ECU that ignores multi-PID requests from a sleeping bus;
- each request waits for its answer up to a timeout; repeated silence means the bus is asleep: back off
  (1 s doubling to 30 s between probes) and rediscover when it wakes;
- while the engine is off (rpm 0, standing) only a slow probe of rpm is sent, to notice the restart.
Answers are not decoded here: they reach the pipeline like any other frame (the DBC decodes them). Multi-frame
answers need flow control from the tester: the poller sends it (an ELM327 bus drops it: the adapter sends its own).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import can

from firmware_bridge.clock import RealClock
from firmware_bridge.errors import InputError
from firmware_bridge.obd import isotp, pids

log = logging.getLogger(__name__)

#: Group requests in a row a PID must be left out of before it is asked alone: one garbled or late answer
#: (a Bluetooth hiccup) must not cost the speed of multi-PID polling.
_LEFT_OUT_STRIKES = 2


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
    #: PIDs per mode 01 request, 1 to 6. None: what the bus says it prefers (its `obd_pids_per_request`
    #: attribute: 6 on an ELM327, where a round trip costs 30-60 ms), else 1.
    max_pids_per_request: int | None = None
    #: PIDs an ECU left out of a multi-PID answer are asked alone for this long, then grouped again.
    regroup_after_s: float = 60.0

    def __post_init__(self) -> None:
        n = self.max_pids_per_request
        if n is not None and not 1 <= n <= pids.MAX_PIDS_PER_REQUEST:
            raise InputError(f"obd max_pids_per_request: expected 1 to {pids.MAX_PIDS_PER_REQUEST}, got {n}")


class PollSchedule:
    """Which PID to ask next: the most overdue of the fast and slow lists (ties: list order)."""

    def __init__(self, fast: list[int], slow: list[int], settings: PollSettings, now: float) -> None:
        self.interval = {pid: settings.fast_interval_s for pid in fast}
        self.interval.update({pid: settings.slow_interval_s for pid in slow})
        self.due = {pid: now for pid in (*fast, *slow)}

    def next_pid(self) -> int | None:
        return min(self.due, key=self.due.__getitem__) if self.due else None

    def next_group(self, now: float, limit: int, alone: set[int] = frozenset()) -> list[int]:
        """The next PID, and up to limit-1 others due by then (most overdue first) unless asked alone."""
        first = self.next_pid()
        if limit <= 1 or first in alone:
            return [first]
        by = max(now, self.due[first])
        others = sorted((p for p, due in self.due.items() if due <= by and p != first and p not in alone),
                        key=self.due.__getitem__)
        return [first, *others[:limit - 1]]

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
        self.pids_per_request = _pids_per_request(settings, bus)
        self._answer = threading.Event()
        self._waiting: frozenset[int] = frozenset()
        self._answers: dict[int, can.Message] = {}
        self._reassembly = isotp.ObdAnswers()
        self._alone: set[int] = set()
        self._alone_since = float("-inf")
        self._left_out: Counter[int] = Counter()
        self._last_request_t = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine_off_since: float | None = None

    # -- can.Listener --------------------------------------------------------------------------------
    def on_message_received(self, msg: can.Message) -> None:
        waiting = self._waiting
        if not waiting:
            return
        answers = self._answers
        if isotp.pci_type(msg) == isotp.FIRST_FRAME and isotp.is_obd_response(msg):
            self._send_flow_control(msg)
        parts = self._reassembly.split(msg)
        for part in (msg,) if parts is None else parts:
            pid = pids.response_pid(part)
            if pid in waiting:
                answers[pid] = part
        if len(answers) == len(waiting):
            self._answer.set()

    def _send_flow_control(self, first_frame: can.Message) -> None:
        try:
            self.bus.send(isotp.flow_control(first_frame))
        except can.CanError as exc:  # the ECU gives up after its N_Bs timeout; the request counts as unanswered
            log.debug("OBD flow control not sent: %s", exc)

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
        """One PID: its answer, or None after the timeout."""
        return self.ask_many((pid,)).get(pid)

    def ask_many(self, pid_list: tuple[int, ...] | list[int]) -> dict[int, can.Message]:
        """One request for 1-6 PIDs under the rate cap; the single-PID answer frames by PID ({} if none came)."""
        gap = 1.0 / self.settings.max_requests_per_s - (self.clock.now() - self._last_request_t)
        if gap > 0 and not self._sleep(gap):
            return {}
        self._answer.clear()
        answers: dict[int, can.Message] = {}
        self._answers = answers
        self._waiting = frozenset(pid_list)
        now = self.clock.now()
        self._last_request_t = now
        try:
            self.bus.send(pids.request_many(pid_list, self.settings.request_id, timestamp=now))
        except can.CanError as exc:  # e.g. ENOBUFS on a quiet SocketCAN bus, an unplugged adapter: never crash
            log.debug("OBD request %s not sent: %s", " ".join(f"{p:02X}" for p in pid_list), exc)
            self._waiting = frozenset()
            return {}
        self.requests_sent += 1
        self._answer.wait(self.settings.response_timeout_s / self.clock.speedup)
        self._waiting = frozenset()
        if answers:
            self.responses += 1
        else:
            self.timeouts += 1
        return dict(answers)

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
                if not self._sleep(backoff):
                    return
                backoff = min(backoff * 2, self.settings.backoff_max_s)
                continue
            backoff = self.settings.backoff_start_s
            self._alone.clear()
            self._left_out.clear()
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
                group = [pids.SPEED_RPM_PIDS[1]]
                if not self._sleep(self.settings.engine_off_probe_s):
                    return
            else:
                group = self._next_group(schedule, now)
                wait = schedule.due[group[0]] - now
                if wait > 0 and not self._sleep(wait):
                    return
            answers = self._ask_group(group)
            now = self.clock.now()
            for asked in group:
                if asked in answers or len(group) == 1:  # left out of a group: due again at once, alone
                    schedule.done(asked, now)
            misses = 0 if answers else misses + 1
            if misses >= self.settings.silence_after_misses:
                log.info("OBD-II: no answer to %d requests, bus asleep; backing off", misses)
                return

    def _next_group(self, schedule: PollSchedule, now: float) -> list[int]:
        if self._alone and now - self._alone_since > self.settings.regroup_after_s:
            self._alone.clear()
        return schedule.next_group(now, self.pids_per_request, self._alone)

    def _ask_group(self, group: list[int]) -> dict[int, can.Message]:
        """Ask a group; PIDs the ECU keeps leaving out are asked alone from now on (per PID fallback)."""
        answers = group_answers = self.ask_many(group)
        if len(group) == 1:
            return answers
        if not group_answers:  # the ECU ignores multi-PID requests, or the bus sleeps: one PID alone tells which
            answers = self.ask_many(group[:1])
            if not answers:
                return answers
        for pid in group:
            if pid in group_answers:
                self._left_out.pop(pid, None)
            else:
                self._left_out[pid] += 1
        alone = [p for p in group if self._left_out[p] >= _LEFT_OUT_STRIKES]
        if alone:
            log.info("OBD-II: PIDs %s not answered in multi-PID requests; asking them alone",
                     " ".join(f"{p:02X}" for p in alone))
            self._alone.update(alone)
            self._alone_since = self.clock.now()
            for pid in alone:
                del self._left_out[pid]
        return answers


def _pids_per_request(settings: PollSettings, bus: can.BusABC) -> int:
    wanted = settings.max_pids_per_request or getattr(bus, "obd_pids_per_request", 1)
    return max(1, min(int(wanted), pids.MAX_PIDS_PER_REQUEST))
