"""Drive the simulated kei car: live on a python-can bus, or offline into a deterministic frame stream / log.

Both paths share one KeiCar, ObdResponder and BroadcastSchedule (or, given an EvConfig, the i-MiEV-like EV and
its broadcast, with no OBD-II), so a live demo and a recorded log of the same cycle carry the same physics; the offline path also plays the scan tool with the agent's own poll
schedule (discovery, then fast and slow PIDs) so a log looks like what the agent would record on a real car.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import can

from firmware_bridge.clock import RealClock, ScaledClock, SimClock
from firmware_bridge.obd.pids import fast_and_slow
from firmware_bridge.obd.poller import PollSchedule, PollSettings
from firmware_bridge.sim.broadcast import BroadcastSchedule
from firmware_bridge.sim.car import CarConfig, CarState, GroundTruth, KeiCar
from firmware_bridge.sim.ev import ElectricKeiCar, EvConfig, EvTruth, imiev_broadcast_schedule
from firmware_bridge.sim.cycles import Cycle, load_cycle
from firmware_bridge.sim.obd import BITMAP_STRIDE, EcuDiagnostics, ObdResponder, obd_request

log = logging.getLogger(__name__)

#: Fixed start of recorded logs (2026-04-01T09:00:00Z), so `write_log` output is byte-for-byte reproducible.
LOG_START_UNIX_S = datetime(2026, 4, 1, 9, 0, 0, tzinfo=timezone.utc).timestamp()

#: ECU answer latency in offline logs (real engine ECUs answer within a few ms).
OBD_RESPONSE_DELAY_S = 0.002
#: Offline poll requests start this far into each period, clear of the broadcast ticks.
_REQUEST_PHASE_S = 0.010
#: Longest the live thread blocks in recv (wall seconds), so stop() and the end of the cycle are noticed.
_MAX_RECV_WAIT_S = 0.02


def _as_cycle(cycle: Cycle | str) -> Cycle:
    return load_cycle(cycle) if isinstance(cycle, str) else cycle


def _car_parts(config: CarConfig | EvConfig | None, cycle: Cycle | str, pid_set,
               broadcast: bool | BroadcastSchedule, ecu_tx_id: int = 0x7E8,
               diagnostics: EcuDiagnostics | None = None):
    """(car, OBD responder or None, broadcast schedule or None): an EV broadcasts the i-MiEV's frames and
    answers no OBD-II requests; the petrol car answers and broadcasts the simulator's own frames, or the
    schedule given (a seeded layout's)."""
    if isinstance(config, EvConfig):
        return ElectricKeiCar(config, _as_cycle(cycle)), None, imiev_broadcast_schedule() if broadcast else None
    car = KeiCar(config, _as_cycle(cycle))
    schedule = broadcast if isinstance(broadcast, BroadcastSchedule) else BroadcastSchedule() if broadcast else None
    return car, ObdResponder(car, pid_set, ecu_tx_id, diagnostics), schedule


class _ScanTool:
    """The agent's own polling order for offline logs: the support bitmaps once, then its fast/slow schedule."""

    def __init__(self, supported: Iterable[int]) -> None:
        supported = set(supported)
        self._bitmaps = sorted(pid for pid in supported if pid % BITMAP_STRIDE == 0)
        fast, slow = fast_and_slow(supported)
        self._schedule = PollSchedule(fast, slow, PollSettings(), now=0.0)

    def next_pid(self, t_s: float) -> int:
        if self._bitmaps:
            return self._bitmaps.pop(0)
        pid = self._schedule.next_pid()
        self._schedule.done(pid, t_s)
        return pid


class DriveFrames(Iterator[can.Message]):
    """A whole drive as time-ordered frames (broadcast, OBD requests and answers); `truth` once exhausted."""

    def __init__(
        self,
        cycle: Cycle | str,
        config: CarConfig | EvConfig | None = None,
        pid_set: str | Iterable[int] = "map",
        broadcast: bool | BroadcastSchedule = True,
        obd_poll_hz: float = 10.0,
        start_time: float = 0.0,
    ) -> None:
        self.car, self.responder, self.schedule = _car_parts(config, cycle, pid_set, broadcast)
        if self.responder is None:
            obd_poll_hz = 0.0
        self.start_time = start_time
        self._request_period_s = 1.0 / obd_poll_hz if obd_poll_hz > 0 else math.inf
        self._frames = self._drive()

    @property
    def truth(self) -> GroundTruth | EvTruth:
        return self.car.truth

    def __next__(self) -> can.Message:
        return next(self._frames)

    def _drive(self) -> Iterator[can.Message]:
        duration_s = self.car.duration_s
        scan_tool = _ScanTool(self.responder.supported if self.responder else ())
        request_count = 0
        pending: can.Message | None = None
        pending_t_s = math.inf
        while True:
            request_t_s = _REQUEST_PHASE_S + request_count * self._request_period_s
            broadcast_t_s = self.schedule.next_due_s() if self.schedule else math.inf
            t_s = min(pending_t_s, broadcast_t_s, request_t_s)
            if t_s >= duration_s and pending is None:
                break
            if t_s == pending_t_s:
                yield pending
                pending, pending_t_s = None, math.inf
            elif t_s == broadcast_t_s:
                yield from self.schedule.frames_due(t_s, self.car.advance_to(t_s), self.start_time + t_s)
            else:
                request = obd_request(scan_tool.next_pid(t_s), self.start_time + t_s)
                request_count += 1
                yield request
                pending = self.responder.respond(request, t_s)
                if pending is not None:
                    pending_t_s = t_s + OBD_RESPONSE_DELAY_S
                    pending.timestamp = self.start_time + pending_t_s
        self.car.advance_to(duration_s)


#: Deterministic offline drive: iterate for the frames, then read `.truth` for what really happened.
generate_frames = DriveFrames


def write_log(
    path: str | Path,
    cycle_name: Cycle | str = "wltc",
    config: CarConfig | EvConfig | None = None,
    pid_set: str | Iterable[int] = "map",
    broadcast: bool | BroadcastSchedule = True,
    obd_poll_hz: float = 10.0,
    start_time: float = LOG_START_UNIX_S,
    progress: Callable[[Iterable[can.Message], float, float], Iterable[can.Message]] | None = None,
) -> GroundTruth | EvTruth:
    """Record a simulated drive with can.Logger (format from the extension; candump `.log` is the usual one);
    ``progress(frames, duration_s, start_time)`` may wrap the frames to show how far it is."""
    frames = generate_frames(cycle_name, config, pid_set, broadcast, obd_poll_hz, start_time)
    shown = frames if progress is None else progress(frames, _as_cycle(cycle_name).duration_s, start_time)
    with can.Logger(str(path)) as logger:
        for message in shown:
            logger.on_message_received(message)
    return frames.truth


class SimulatedCar:
    """The kei car live on a python-can bus: answers OBD-II requests and broadcasts, in the clock's car time.

    Drive time 0 is `start_time` (Unix seconds), or the clock's time at start(). Every frame carries the car
    time it is due at; answers come `OBD_RESPONSE_DELAY_S` after their request. After the cycle the ignition
    goes off and the car falls silent. On a `SimClock` the loop that owns the clock calls `step` (see
    `run_on_sim_clock`); on a wall or scaled clock `start()` runs it in a thread.
    """

    def __init__(
        self,
        bus: can.BusABC,
        config: CarConfig | EvConfig | None = None,
        cycle: Cycle | str = "wltc",
        pid_set: str | Iterable[int] = "map",
        clock: RealClock | ScaledClock | SimClock | None = None,
        broadcast: bool = True,
        start_time: float | None = None,
        ecu_tx_id: int = 0x7E8,
        diagnostics: EcuDiagnostics | None = None,
    ) -> None:
        self.bus = bus
        self.clock = clock or RealClock()
        self._car, self._responder, self._schedule = _car_parts(config, cycle, pid_set, broadcast, ecu_tx_id,
                                                                    diagnostics)
        self._start_time = start_time
        self._origin_s = self.clock.now() if start_time is None else start_time
        self._pending: list[tuple[float, can.Message]] = []  # (car time due, answer)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def finished(self) -> threading.Event:
        """Set once the cycle is over (ignition off), or when the thread died (see `error`)."""
        return self._finished

    @property
    def state(self) -> CarState:
        return self._car.state

    @property
    def truth(self) -> GroundTruth | EvTruth:
        with self._lock:
            return self._car.truth

    def start(self) -> SimulatedCar:
        """Drive in a thread on a wall or scaled clock."""
        if self._thread is not None:
            raise RuntimeError("SimulatedCar already started")
        if self._start_time is None:
            self._origin_s = self.clock.now()
        self._thread = threading.Thread(target=self._run, name="kei-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> SimulatedCar:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def next_due(self, broadcast: bool = True) -> float:
        """Clock time of the car's next frame (``broadcast=False``: its next answer; broadcast frames can wait
        for the next step, they carry their own times), or of the end of its cycle; inf once finished."""
        if self._finished.is_set():
            return math.inf
        due_s = [self._car.duration_s, *(t for t, _ in self._pending[:1])]
        if broadcast and self._schedule is not None:
            due_s.append(self._schedule.next_due_s())
        return self._origin_s + min(due_s)

    def step(self, now: float) -> int:
        """Everything due by clock time ``now``: broadcast frames at their own times, answers to the requests
        received so far, then the answers due; at the end of the cycle the ignition goes off. Returns how many
        frames the car received (requests, flow control: each may call for an answer)."""
        received = 0
        while (request := self.bus.recv(timeout=0)) is not None:
            received += 1
            if not self._finished.is_set():  # asleep after the cycle: nobody answers
                self._answer(request, now)
        if self._finished.is_set():
            return received
        origin_s, end_s = self._origin_s, self._car.duration_s
        if self._schedule is not None:
            while origin_s + (due_s := self._schedule.next_due_s()) <= now and due_s <= end_s:
                for message in self._schedule.frames_due(due_s, self._advance(due_s), origin_s + due_s):
                    self._send(message)
        while self._pending and origin_s + self._pending[0][0] <= now:
            self._send(self._pending.pop(0)[1])
        if origin_s + end_s <= now:
            self._advance(now - origin_s)
            self._finished.set()
        return received

    def _answer(self, request: can.Message, now: float) -> None:
        if self._responder is None:
            return
        t_s = now - self._origin_s
        with self._lock:  # multi-PID requests too: first frame now, the rest after flow control
            answers = self._responder.respond_frames(request, t_s)
        due_s = t_s + OBD_RESPONSE_DELAY_S
        for answer in answers:
            answer.timestamp = self._origin_s + due_s
            self._pending.append((due_s, answer))

    def _advance(self, t_s: float) -> CarState:
        with self._lock:
            return self._car.advance_to(t_s)

    def _run(self) -> None:
        speedup = float(getattr(self.clock, "speedup", 1.0))
        try:
            while not self._stop.is_set() and not self._finished.is_set():
                self.step(self.clock.now())
                wait_s = min(_MAX_RECV_WAIT_S, max(0.0, (self.next_due() - self.clock.now()) / speedup))
                request = self.bus.recv(timeout=wait_s)
                if request is not None:
                    self._answer(request, self.clock.now())
        except Exception as exc:  # noqa: BLE001 - a dead simulator must say why, not vanish
            self.error = exc
            log.exception("simulated car stopped")
            self._finished.set()

    def _send(self, message: can.Message) -> None:
        try:
            self.bus.send(message)
        except can.CanOperationError as exc:  # a full or sleeping bus drops the frame; the car keeps driving
            log.debug("simulated car could not send 0x%X: %s", message.arbitration_id, exc)


#: Simulated seconds between two agent ticks (silence checks, the live view, stop conditions).
AGENT_TICK_S = 0.1
#: Pacing further behind the wall clock than this is reported once (the figures are not affected).
_PACING_SLACK_S = 1.0


def run_on_sim_clock(bus: can.BusABC, pipeline, clock: SimClock, stop: threading.Event, listeners=(),
                     on_tick=None, *, cars: Sequence[SimulatedCar], taps: Sequence[tuple[can.BusABC, can.Listener]] = (),
                     speedup: float | None = None, tick_s: float = AGENT_TICK_S) -> None:
    """The live loop (as `run_live`) with the car, its ECU and the poller on one simulated clock.

    Until ``stop`` is set: the cars send what is due, the agent receives every frame on ``bus`` (pipeline,
    then ``listeners`` such as the poller), helper threads on the clock run, and ``taps`` (a recorder's bus
    and its listener) see every frame; only then does time move to the next thing due. ``speedup`` paces the
    drive against the wall clock for people who watch; None runs it as fast as the machine allows. Either way
    the figures are the same.
    """
    wall0, t0 = time.monotonic(), clock.now()
    late_reported = False
    next_tick = t0
    received_frames: list[can.Message] = []  # handed to the pipeline every tick, as a live bus's are
    try:
        while not stop.is_set():
            now = clock.now()
            settled = False
            while True:  # frames answer frames (requests, flow control): deliver until the bus is quiet
                heard = sum(car.step(now) for car in cars)
                received = 0
                while (msg := bus.recv(timeout=0)) is not None:
                    received += 1
                    received_frames.append(msg)
                    for listener in listeners:
                        listener.on_message_received(msg)
                if settled and not heard and not received:
                    break
                clock.settle()  # the poller decides on everything received so far
                settled = True
            for tap_bus, tap in taps:
                while (msg := tap_bus.recv(timeout=0)) is not None:
                    tap.on_message_received(msg)
            if now >= next_tick:
                pipeline.feed_messages(received_frames)
                received_frames = []
                pipeline.tick(now)
                if on_tick is not None:
                    on_tick()
                next_tick = now + tick_s
            due = min(next_tick, clock.next_wake_s(), *(car.next_due(broadcast=False) for car in cars))
            if speedup is not None:
                behind_s = time.monotonic() - wall0 - (due - t0) / speedup
                if behind_s < 0:
                    time.sleep(-behind_s)
                elif behind_s > _PACING_SLACK_S and not late_reported:
                    late_reported = True
                    log.warning("this machine cannot keep %gx; the drive runs slower than asked (same figures)",
                                speedup)
            clock.advance(due)
    finally:
        pipeline.feed_messages(received_frames)
        pipeline.finish()
        if on_tick is not None:
            on_tick()
        clock.close()  # the caller stops the poller next


#: How far the agent's figures may be from the simulator's ground truth (relative), by what it measures from:
#: distance from the speed PID or frames; fuel from 0x5E, MAF, or speed-density (its constant volumetric
#: efficiency reads up to 5 % high against the simulated engine's); an EV's pack energy from -V*I.
TRUTH_TOLERANCE = {"distance_km": 0.005, "fuel_rate": 0.01, "maf": 0.03, "map": 0.05, "energy_kwh": 0.01}


def differences_from_truth(stats: dict, truth: GroundTruth | EvTruth, pid_set: str = "map") -> list[str]:
    """One line per figure of the stats total further from the ground truth than `TRUTH_TOLERANCE` allows."""
    total = stats.get("total") or {}
    if isinstance(truth, EvTruth):
        checks = [("distance", "distance_km", truth.distance_km, "distance_km", "km"),
                  ("pack energy", "energy_kwh", truth.energy_kwh, "energy_kwh", "kWh")]
    else:
        checks = [("distance", "distance_km", truth.distance_km, "distance_km", "km"),
                  ("fuel", "fuel_used_l", truth.fuel_l, pid_set, "L")]
    problems = []
    for name, key, true_value, tolerance_key, unit in checks:
        measured, tolerance = total.get(key), TRUTH_TOLERANCE[tolerance_key]
        if measured is None:
            problems.append(f"no {name} measured (ground truth {true_value:.3f} {unit})")
        elif abs(measured - true_value) > tolerance * abs(true_value):
            problems.append(f"{name} {measured:.3f} {unit} is {100 * (measured / true_value - 1):+.2f} % from the "
                            f"ground truth {true_value:.3f} {unit} (tolerance {100 * tolerance:g} %)")
    return problems
