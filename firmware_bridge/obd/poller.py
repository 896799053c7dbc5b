"""The OBD-II poller: asks the engine ECU for mode 01 PIDs at a bounded rate, only when enabled.

A car's bus is safety-critical, so the agent is passive unless polling is switched on, and then:
- supported PIDs are discovered from the 0x00/0x20/... bitmaps, never assumed;
- a fast schedule (speed, rpm, fuel inputs) and a slow one (temperatures, levels), most overdue first;
- a hard cap on frames per second (default 10, at most 50, and what the bus allows: K-line is slower) over
  everything sent, discovery, flow control and diagnostics included, and only on OBD-II request IDs
  (obd/ids.py): no setting can make the agent flood a car's bus or talk to anything else;
- PIDs due together go in one request (up to 6, SAE J1979) where the bus makes round trips dear (an ELM327:
  30-60 ms each) or the settings ask for it; a PID the ECU leaves out of two multi-PID answers in a row is
  asked alone for a while (`regroup_after_s`), and a group nobody answers is retried as one PID to tell an
  ECU that ignores multi-PID requests from a sleeping bus;
- each request waits for its answer up to a timeout; repeated silence means the bus is asleep (or the car
  speaks another protocol): a WARNING, then back off (1 s doubling to 30 s between probes) and rediscover
  when it wakes;
- while the engine is off (rpm 0, standing) only a slow probe of rpm is sent, to notice the restart.
Answers are not decoded here: they reach the pipeline like any other frame (the DBC decodes them). Multi-frame
answers need flow control from the tester: the poller sends it (an ELM327 bus drops it: the adapter sends its own).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import can

from firmware_bridge.clock import RealClock
from firmware_bridge.errors import InputError
from firmware_bridge.obd import ids, isotp, pids

log = logging.getLogger(__name__)

#: Group requests in a row a PID must be left out of before it is asked alone: one garbled or late answer
#: (a Bluetooth hiccup) must not cost the speed of multi-PID polling.
_LEFT_OUT_STRIKES = 2
#: The most frames per second any setting may ask for: a few percent of a 500 kbit/s bus, far below what
#: an ECU or gateway notices, and above what an ELM327 can do anyway.
MAX_REQUESTS_PER_S_LIMIT = 50.0
#: ISO 15765-4: every ECU answers a request within P2CAN = 50 ms (an ELM327 on K-line says it needs longer).
_P2_CAN_S = 0.05


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
        rate = self.max_requests_per_s
        if (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate)
                or not 0 < rate <= MAX_REQUESTS_PER_S_LIMIT):
            raise InputError(f"obd max_requests_per_s: expected a number above 0 and at most "
                             f"{MAX_REQUESTS_PER_S_LIMIT:g}, got {rate!r}")
        try:
            ids.check_request_id(self.request_id)
        except ValueError as exc:
            raise InputError(f"obd request_id: {exc}") from None
        for name in ("fast_interval_s", "slow_interval_s", "response_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise InputError(f"obd {name}: expected a positive number of seconds, got {value!r}")
        n = self.max_pids_per_request
        if n is not None and not 1 <= n <= pids.MAX_PIDS_PER_REQUEST:
            raise InputError(f"obd max_pids_per_request: expected 1 to {pids.MAX_PIDS_PER_REQUEST}, got {n}")


def poll_settings(obd: dict) -> PollSettings:
    """The `[obd]` section of the configuration as checked settings (InputError naming a bad key)."""
    return PollSettings(max_requests_per_s=obd["max_requests_per_s"], fast_interval_s=obd["fast_interval_s"],
                        slow_interval_s=obd["slow_interval_s"], response_timeout_s=obd["response_timeout_s"],
                        request_id=obd["request_id"], max_pids_per_request=obd["max_pids_per_request"])


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
    """Runs in its own thread; give it to the bus's Notifier as a listener so it sees the answers.

    `diagnostics` (obd/diagnostics.py's `read_diagnostics` bound to a consumer) is run at start and every
    `diagnostics_interval_s` between polls, on the same paced sends.
    """

    def __init__(self, bus: can.BusABC, settings: PollSettings = PollSettings(), clock=None,
                 engine_rpm: Callable[[], float | None] = lambda: None,
                 speed_kmh: Callable[[], float | None] = lambda: None,
                 diagnostics: Callable[["ObdPoller"], None] | None = None,
                 diagnostics_interval_s: float = 300.0) -> None:
        self.bus = bus
        self.settings = settings
        self.clock = clock or RealClock()
        self.engine_rpm, self.speed_kmh = engine_rpm, speed_kmh
        self.diagnostics, self.diagnostics_interval_s = diagnostics, diagnostics_interval_s
        self._next_diagnostics_t = float("-inf")
        self.supported: set[int] = set()
        self.requests_sent = 0
        self.frames_sent = 0
        self.responses = 0
        self.timeouts = 0
        self._answer = threading.Event()
        self._waiting: frozenset[int] = frozenset()
        self._answers: dict[int, can.Message] = {}
        self._reassembly = isotp.ObdAnswers()
        self._collecting: list[tuple[str, bytes]] | None = None
        self._collect_service = 0
        self._payloads = isotp.Payloads()
        self._alone: set[int] = set()
        self._alone_since = float("-inf")
        self._left_out: Counter[int] = Counter()
        self._send_lock = threading.Lock()
        self._next_send_t = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine_off_since: float | None = None
        self._silent_warned = False
        self._not_polled: frozenset[int] = frozenset()

    def stop_polling(self, pid_list) -> None:
        """Ask for these PIDs no more, from the next request on (the car's own broadcast frames give them)."""
        self._not_polled = self._not_polled | frozenset(pid_list)

    @property
    def pids_per_request(self) -> int:
        """PIDs per mode 01 request: the settings', else what the bus prefers (it may learn its protocol late)."""
        return _pids_per_request(self.settings, self.bus)

    @property
    def max_requests_per_s(self) -> float:
        """The cap in force: the settings', or less where the bus is slower (K-line through an ELM327)."""
        return min(self.settings.max_requests_per_s, getattr(self.bus, "obd_max_requests_per_s", math.inf))

    @property
    def response_timeout_s(self) -> float:
        return max(self.settings.response_timeout_s, getattr(self.bus, "obd_response_timeout_s", 0.0))

    # -- can.Listener --------------------------------------------------------------------------------
    def on_message_received(self, msg: can.Message) -> None:
        waiting, collecting = self._waiting, self._collecting
        if not waiting and collecting is None:
            return
        if isotp.pci_type(msg) == isotp.FIRST_FRAME and isotp.is_obd_response(msg):
            self._send_flow_control(msg)
        if collecting is not None:
            self._collect(msg, collecting)
            return
        answers = self._answers
        parts = self._reassembly.split(msg)
        for part in (msg,) if parts is None else parts:
            pid = pids.response_pid(part)
            if pid in waiting:
                answers[pid] = part
        if len(answers) == len(waiting):
            self._answer.set()

    def _collect(self, msg: can.Message, collecting: list[tuple[str, bytes]]) -> None:
        payload = self._payloads.feed(msg)
        if not payload:
            return
        service = self._collect_service
        if payload[0] == service + pids.POSITIVE_RESPONSE_OFFSET:
            collecting.append((ids.label(msg.arbitration_id, msg.is_extended_id), payload))
        elif payload[:2] == bytes((pids.NEGATIVE_RESPONSE, service)):
            if payload[2:3] != bytes((pids.RESPONSE_PENDING,)):  # "busy, answer follows": keep waiting
                collecting.append((ids.label(msg.arbitration_id, msg.is_extended_id), payload))
        else:
            return
        self._answer.set()

    def _send_flow_control(self, first_frame: can.Message) -> None:
        self._send(isotp.flow_control(first_frame))  # the ECU gives up after its N_Bs timeout if this fails

    # -- every frame the agent transmits -------------------------------------------------------------
    def _pace(self) -> bool:
        """Wait for the next send slot under the cap; False when asked to stop."""
        wait = self._next_send_t - self.clock.now()
        return wait <= 0 or self._sleep(wait)

    def _send(self, msg: can.Message) -> bool:
        """Send one frame, OBD-II request IDs only; each frame takes one slot of the cap."""
        if not ids.is_request(msg.arbitration_id, msg.is_extended_id):  # e.g. flow control for a frame from F1
            log.warning("OBD-II: not sending on 0x%X: not an OBD-II request ID", msg.arbitration_id)
            return False
        with self._send_lock:
            now = self.clock.now()
            self._next_send_t = max(self._next_send_t, now) + 1.0 / self.max_requests_per_s
            msg.timestamp = now
            try:
                self.bus.send(msg)
            except can.CanError as exc:  # e.g. ENOBUFS on a quiet SocketCAN bus, an unplugged adapter: never crash
                log.debug("OBD frame %s to 0x%X not sent: %s", bytes(msg.data).hex(" "), msg.arbitration_id, exc)
                return False
            self.frames_sent += 1
            return True

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
        return not self.clock.wait(self._stop, seconds)

    def ask(self, pid: int) -> can.Message | None:
        """One PID: its answer, or None after the timeout."""
        return self.ask_many((pid,)).get(pid)

    def ask_many(self, pid_list: tuple[int, ...] | list[int]) -> dict[int, can.Message]:
        """One request for 1-6 PIDs under the rate cap; the single-PID answer frames by PID ({} if none came)."""
        if not self._pace():
            return {}
        self._answer.clear()
        answers: dict[int, can.Message] = {}
        self._answers = answers
        self._waiting = frozenset(pid_list)
        if not self._send(pids.request_many(pid_list, self.settings.request_id)):
            self._waiting = frozenset()
            return {}
        self.requests_sent += 1
        self.clock.wait(self._answer, self.response_timeout_s)
        self._waiting = frozenset()
        if answers:
            self.responses += 1
        else:
            self.timeouts += 1
        return dict(answers)

    def exchange(self, payload: bytes, first_answer_s: float = 1.0) -> list[tuple[str, bytes]]:
        """One diagnostic request (any service, e.g. `03`, `09 02`) under the rate cap: every ECU's whole
        answers as (ECU, payload), positive or negative (7F), gathered until the ECUs fall quiet."""
        if not self._pace():
            return []
        collected: list[tuple[str, bytes]] = []
        self._payloads = isotp.Payloads()
        self._collect_service = payload[0]
        self._answer.clear()
        self._collecting = collected
        try:
            if not self._send(pids.request_frame(payload, self.settings.request_id)):
                return []
            self.requests_sent += 1
            wait_s = max(first_answer_s, self.response_timeout_s)
            quiet_s = max(_P2_CAN_S, getattr(self.bus, "obd_response_timeout_s", 0.0))
            while self.clock.wait(self._answer, wait_s) and not self._stop.is_set():
                self._answer.clear()
                wait_s = quiet_s  # other ECUs, or more messages of a K-line answer, may follow
        finally:
            self._collecting = None
        if collected:
            self.responses += 1
        else:
            self.timeouts += 1
        return list(collected)

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
            sent_before = self.requests_sent
            self.supported = self.discover()
            if not self.supported:
                self._warn_silent(self.requests_sent - sent_before)
                if not self._sleep(backoff):
                    return
                backoff = min(backoff * 2, self.settings.backoff_max_s)
                continue
            if self._silent_warned:
                log.warning("OBD-II: the ECU answers again")
                self._silent_warned = False
            backoff = self.settings.backoff_start_s
            self._diagnostics_if_due()
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
            for pid in self._not_polled & schedule.due.keys():
                del schedule.due[pid]
            if not schedule.due or self._engine_off(now) and pids.SPEED_RPM_PIDS[1] in self._not_polled:
                if not self._sleep(self.settings.slow_interval_s):  # nothing to ask: the frames say it all
                    return
                continue
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
                self._warn_silent(misses)
                return
            self._diagnostics_if_due()

    def _warn_silent(self, requests: int) -> None:
        """Once per silence: a WARNING (seen under systemd) saying what no answer usually means."""
        if self._silent_warned or not requests:
            log.debug("OBD-II: still no answer; backing off")
            return
        self._silent_warned = True
        log.warning("OBD-II: no answer to %d requests on 0x%X (bus asleep, ignition off, or the car speaks "
                    "another protocol or request ID); backing off and retrying", requests, self.settings.request_id)

    def _diagnostics_if_due(self) -> None:
        now = self.clock.now()
        if self.diagnostics is not None and now >= self._next_diagnostics_t:
            self._next_diagnostics_t = now + self.diagnostics_interval_s
            try:
                self.diagnostics(self)
            except Exception:  # noqa: BLE001 - an answer we cannot read must not stop the polling
                log.warning("OBD-II: diagnostics not read this time", exc_info=True)

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
