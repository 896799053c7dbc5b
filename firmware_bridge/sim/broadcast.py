"""The simulated car's own periodic broadcast frames, encoded with cantools from the ``kei-sim``
car's kei_sim.dbc.

Manufacturer-style frames arrive unasked and fast (20-500 ms), next to the slow request/response OBD-II
traffic, so the decoder and the signal map see both kinds of source. Periods come from the DBC's
GenMsgCycleTime attribute: the DBC is the one description of the layout and timing. The layout is the
SIMULATOR'S, not a real car's.

A seeded layout (:func:`seeded_layout`) is a car nobody published a DBC for: the seed picks frame IDs, start
bits, lengths, byte orders, signedness, scales and offsets (speed in km/h or mph), and the frames carry what
real ones do besides: rolling counters, checksums, constants, noise, and look-alikes that a learner must not
take for the real thing (four wheel speeds, a lagging tachometer needle, a pedal position that is a nonlinear
function of the throttle). Its cantools database is the ground truth the learnt layout is checked against.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import can
import cantools

from firmware_bridge.constants import KM_PER_MILE
from firmware_bridge.vehicles import bundled_folder
from firmware_bridge.sim.car import CarState

#: The simulated car's broadcast frames: a DBC made up for the simulator, in the ``kei-sim`` car's folder.
SIM_DBC_PATH = bundled_folder("kei-sim") / "kei_sim.dbc"

#: Which CarState attribute feeds each DBC signal, per message (booleans are sent as 0/1).
_SIGNAL_SOURCES: dict[str, dict[str, str]] = {
    "SIM_ENGINE": {
        "engine_speed_rpm": "engine_rpm",
        "throttle_position_pct": "throttle_pct",
        "intake_map_kpa": "map_kpa",
        "intake_air_temp_c": "iat_c",
        "fuel_cut_active": "fuel_cut",
    },
    "SIM_SPEED": {"vehicle_speed_kmh": "speed_kmh"},
    "SIM_FUEL": {"fuel_rate_lph": "fuel_rate_lph", "fuel_level_pct": "fuel_level_pct"},
    "SIM_BODY": {
        "odometer_km": "odometer_km",
        "coolant_temp_c": "coolant_c",
        "ignition_on": "ignition",
        "battery_voltage_v": "battery_v",
    },
}

#: Messages are staggered by this much so frames of one tick do not share a timestamp, as on a real bus.
_STAGGER_S = 0.002
#: Tolerance for comparing due times computed as phase + k * period.
_TIME_EPS_S = 1e-9


@dataclass(frozen=True)
class BroadcastFrame:
    """One periodic message: its DBC definition, period, phase and where its signal values come from."""

    message: cantools.database.Message
    period_s: float
    phase_s: float
    sources: dict[str, str]

    def encode(self, state: CarState) -> bytes:
        """Signal values from the state, clamped to the DBC range (cantools rounds to the nearest step)."""
        values = {}
        for signal in self.message.signals:
            value = float(getattr(state, self.sources[signal.name]))
            values[signal.name] = min(max(value, signal.minimum), signal.maximum)
        return self.message.encode(values, strict=False)


class BroadcastSchedule:
    """When each broadcast frame is due (drive time, seconds) and its bytes for a given state."""

    def __init__(self, dbc_path: str | Path | None = None, signal_sources: dict[str, dict[str, str]] | None = None,
                 frames: Sequence[BroadcastFrame | SeededFrame] | None = None) -> None:
        """The simulator's own frames by default; or another DBC with its message -> signal -> state map; or
        ready-made frames (a seeded layout's)."""
        if frames is None:
            database = cantools.database.load_file(str(dbc_path or SIM_DBC_PATH))
            frames = []
            for index, (name, sources) in enumerate((signal_sources or _SIGNAL_SOURCES).items()):
                message = database.get_message_by_name(name)
                if not message.cycle_time:
                    raise ValueError(f"{name}: no GenMsgCycleTime in the DBC")
                frames.append(BroadcastFrame(message, message.cycle_time / 1000.0, index * _STAGGER_S, sources))
        self.frames: tuple[BroadcastFrame | SeededFrame, ...] = tuple(frames)
        self._sent_counts = [0] * len(self.frames)

    def __iter__(self) -> Iterator[tuple[float, Callable[[CarState], bytes]]]:
        """(period_s, encoder) for each message."""
        return iter([(frame.period_s, frame.encode) for frame in self.frames])

    def _due_s(self, index: int) -> float:
        frame = self.frames[index]
        return frame.phase_s + self._sent_counts[index] * frame.period_s

    def next_due_s(self) -> float:
        """Drive time of the next frame due."""
        return min(self._due_s(index) for index in range(len(self.frames)))

    def frames_due(self, t_s: float, state: CarState, timestamp: float | None = None) -> list[can.Message]:
        """Frames due at or before t_s, once each: a late caller gets the latest frame, not a burst of stale ones.

        Nothing is sent while the ignition is off (the schedule still moves on). Messages are stamped with
        `timestamp` (e.g. Unix car time), t_s when not given.
        """
        out: list[can.Message] = []
        for index, frame in enumerate(self.frames):
            if self._due_s(index) > t_s + _TIME_EPS_S:
                continue
            periods_elapsed = math.floor((t_s - frame.phase_s) / frame.period_s + _TIME_EPS_S)
            self._sent_counts[index] = periods_elapsed + 1
            if state.ignition:
                out.append(
                    can.Message(
                        timestamp=t_s if timestamp is None else timestamp,
                        arbitration_id=frame.message.frame_id,
                        is_extended_id=False,
                        data=frame.encode(state),
                    )
                )
        return out


# -- seeded layouts -------------------------------------------------------------------------------------------
#: Tick of the seeded frames' shared grid, and its offset: clear of the offline scan tool's requests (10 ms
#: into each 100 ms) and their answers, so one car state serves every frame of a tick.
SEEDED_TICK_S = 0.02
SEEDED_PHASE_S = 0.005

#: Speed resolutions (per raw step) real cars use, in km/h and in mph.
_SPEED_SCALES = (0.01, 1 / 128, 0.05, 1 / 64, 0.1, 1 / 32)
#: Engine speed resolutions, rpm per raw step.
_RPM_SCALES = (0.25, 0.5, 1.0, 0.125, 1 / 8, 2.0)
_SPEED_MAX_KMH, _RPM_MAX = 140.0, 7000.0


@dataclass
class SeededFrame:
    """One message of a seeded layout: values from the car state, then its counter and checksum filled in."""

    message: cantools.database.Message
    period_s: float
    values: dict[str, Callable[[CarState, int], float]]
    checksum_byte: int | None = None
    phase_s: float = SEEDED_PHASE_S
    sent: int = 0

    def encode(self, state: CarState) -> bytes:
        values = {}
        for signal in self.message.signals:
            value = self.values[signal.name](state, self.sent) if signal.name in self.values else 0.0
            values[signal.name] = min(max(value, signal.minimum), signal.maximum)
        self.sent += 1
        data = bytearray(self.message.encode(values, strict=False, scaling=True))
        if self.checksum_byte is not None:  # Toyota-style: bytes + ID + length, modulo 256
            data[self.checksum_byte] = 0
            frame_id = self.message.frame_id
            data[self.checksum_byte] = (sum(data) + (frame_id & 0xFF) + (frame_id >> 8) + len(data)) & 0xFF
        return bytes(data)


@dataclass(frozen=True)
class SeededLayout:
    """A seeded car's broadcast: its ground-truth database and where speed and rpm are in it."""

    seed: int
    database: cantools.database.Database
    #: quantity (speed_kmh, engine_rpm, ...) -> (message, signal) carrying it; speed may be in mph.
    targets: dict[str, tuple[str, str]]
    speed_in_mph: bool
    _frames: Callable[[], list[SeededFrame]] = field(repr=False)

    def schedule(self) -> BroadcastSchedule:
        """A fresh schedule (counters at 0) for one drive."""
        return BroadcastSchedule(frames=self._frames())

    def speed_kmh(self, decoded: dict[str, float]) -> float:
        """The speed in km/h from the truth's decoded speed signal."""
        return decoded[self.targets["speed_kmh"][1]] * (KM_PER_MILE if self.speed_in_mph else 1.0)


class _Bits:
    """Free bits of one 8-byte frame; places signals at random without overlap (cantools' bit numbering)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set()

    @staticmethod
    def covered(start: int, length: int, byte_order: str) -> set[int] | None:
        """Little-endian bit numbers (byte * 8 + bit) a signal covers, or None if it leaves the frame."""
        if byte_order == "little_endian":
            return set(range(start, start + length)) if start + length <= 64 else None
        msb = (7 - start // 8) * 8 + start % 8  # position in the frame read as one big-endian integer
        if msb - length + 1 < 0:
            return None
        return {(7 - p // 8) * 8 + p % 8 for p in range(msb - length + 1, msb + 1)}

    def place(self, length: int, byte_order: str, start: int | None = None, packed: bool = False) -> int:
        """At `start`; else at random (packed: side by side from the frame's start), else where it fits."""
        in_order = list(range(64)) if byte_order == "little_endian" else [
            (7 - q // 8) * 8 + q % 8 for q in range(63, -1, -1)]  # MSB positions from the first byte's top
        tries = [start] if start is not None else in_order if packed else [
            self.rng.randrange(64) for _ in range(200)] + in_order
        for at in tries:
            bits = self.covered(at, length, byte_order)
            if bits is not None and not bits & self.used:
                self.used |= bits
                return at
        raise ValueError("no room left in the frame")


def _signal(name: str, start: int, length: int, byte_order: str, signed: bool, scale: float, offset: float,
            unit: str = "") -> cantools.database.can.Signal:
    from cantools.database.conversion import BaseConversion

    raw_min, raw_max = (-(1 << length - 1), (1 << length - 1) - 1) if signed else (0, (1 << length) - 1)
    return cantools.database.can.Signal(
        name, start, length, byte_order, signed, conversion=BaseConversion.factory(scale, offset),
        minimum=raw_min * scale + offset, maximum=raw_max * scale + offset, unit=unit)


def _bits_for(max_value: float, scale: float, signed: bool) -> int:
    return max(1, math.ceil(math.log2(max_value / scale + 1))) + int(signed)


def seeded_layout(seed: int) -> SeededLayout:
    """The broadcast of a made-up car, the same for the same seed (stdlib Mersenne Twister)."""
    rng = random.Random(seed)
    taken = {message.frame_id for message in cantools.database.load_file(str(SIM_DBC_PATH)).messages}
    ids = rng.sample([i for i in range(0x0A0, 0x600) if i not in taken], 6)  # never the simulator's own frames
    speed_in_mph = rng.random() < 0.35
    speed_unit = 1.0 / KM_PER_MILE if speed_in_mph else 1.0
    speed_scale = rng.choice(_SPEED_SCALES)
    wheel_scale = rng.choice(_SPEED_SCALES[:4])
    rpm_scale = rng.choice(_RPM_SCALES)
    wobble = [(rng.uniform(-0.02, 0.02), rng.uniform(0.6, 1.2), rng.uniform(0.3, 1.5), rng.uniform(0, 2 * math.pi))
              for _ in range(4)]
    noise = {"rng": random.Random()}

    def wheel(i):
        factor, amplitude, hz, phase = wobble[i]
        return lambda s, n: max(0.0, s.speed_kmh * (1 + factor)
                                + amplitude * min(1.0, s.speed_kmh / 20) * math.sin(2 * math.pi * hz * s.t_s + phase))

    tach = {"rpm": 0.0}

    def tach_rpm(s, n):  # a needle with a 0.25 s lag behind the engine
        tach["rpm"] += (s.engine_rpm - tach["rpm"]) * min(1.0, 0.1 / 0.25)
        return tach["rpm"]

    messages: list[tuple[cantools.database.can.Message, float, dict, int | None]] = []
    targets: dict[str, tuple[str, str]] = {}

    def message(index: int, name: str, period_s: float, specs: list, guarded: bool, mixed: bool = True) -> None:
        """specs: (signal name, length, scale, offset, signed, unit, value function, target quantity or None)."""
        byte_order = rng.choice(("little_endian", "big_endian"))
        bits = _Bits(rng)
        signals, values, checksum_byte = [], {}, None
        if guarded:  # checksum in the first or last byte, a rolling counter in the byte next to it
            checksum_byte = rng.choice((0, 7))
            counter_byte = 1 if checksum_byte == 0 else 6
            signals.append(_signal("checksum", bits.place(8, "little_endian", checksum_byte * 8), 8,
                                   "little_endian", False, 1, 0))
            counter_bits = rng.choice((2, 4))
            start = bits.place(counter_bits, "little_endian", counter_byte * 8 + rng.choice((0, 8 - counter_bits)))
            signals.append(_signal("counter", start, counter_bits, "little_endian", False, 1, 0))
            values["counter"] = lambda s, n, m=1 << counter_bits: n % m
        for signal_name, length, scale, offset, signed, unit, value, target in specs:
            order = byte_order if not mixed or rng.random() < 0.8 else rng.choice(("little_endian", "big_endian"))
            start = bits.place(length, order, packed=not mixed)
            signals.append(_signal(signal_name, start, length, order, signed, scale, offset, unit))
            values[signal_name] = value
            if target:
                targets[target] = (name, signal_name)
        frame_id = ids[index]
        msg = cantools.database.can.Message(frame_id, name, 8, signals, cycle_time=round(period_s * 1000))
        messages.append((msg, period_s, values, checksum_byte))

    speed_signed = rng.random() < 0.3
    rpm_signed = rng.random() < 0.3
    speed_bits = _bits_for(_SPEED_MAX_KMH * speed_unit, speed_scale, speed_signed) + rng.choice((0, 0, 1, 2))
    rpm_bits = _bits_for(_RPM_MAX, rpm_scale, rpm_signed) + rng.choice((0, 0, 1))
    message(0, "SPEED", SEEDED_TICK_S, [
        ("vehicle_speed", speed_bits, speed_scale, 0.0, speed_signed, "mph" if speed_in_mph else "km/h",
         lambda s, n: s.speed_kmh * speed_unit, "speed_kmh"),
        ("brake_flag", 1, 1, 0, False, "", lambda s, n: float(s.accel_ms2 < -0.3), None),
    ], guarded=True)
    wheel_bits = _bits_for(_SPEED_MAX_KMH, wheel_scale, False)
    message(1, "WHEELS", SEEDED_TICK_S, [
        (f"wheel_speed_{corner}", wheel_bits, wheel_scale, 0.0, False, "km/h", wheel(i), None)
        for i, corner in enumerate(("fl", "fr", "rl", "rr"))], guarded=False, mixed=False)
    throttle_scale = rng.choice((0.4, 100 / 255, 0.5))
    message(2, "ENGINE", SEEDED_TICK_S, [
        ("engine_speed", rpm_bits, rpm_scale, 0.0, rpm_signed, "rpm", lambda s, n: s.engine_rpm, "engine_rpm"),
        ("throttle", 8, throttle_scale, 0.0, False, "%", lambda s, n: s.throttle_pct, "throttle_pct"),
        ("pedal", 8, 0.5, 0.0, False, "%", lambda s, n: 100.0 * math.sqrt(max(s.throttle_pct, 0.0) / 100.0), None),
    ], guarded=True)
    coolant_offset = rng.choice((-40.0, -48.0, -50.0))
    message(3, "ENGINE_SLOW", 5 * SEEDED_TICK_S, [
        ("tacho_rpm", 14, 1.0, 0.0, False, "rpm", tach_rpm, None),
        ("intake_map", rng.choice((8, 10)), rng.choice((1.0, 0.5)), 0.0, False, "kPa", lambda s, n: s.map_kpa,
         "map_kpa"),
        ("coolant_temp", 8, 1.0, coolant_offset, False, "degC", lambda s, n: s.coolant_c, "coolant_c"),
    ], guarded=rng.random() < 0.5)
    message(4, "BODY", 5 * SEEDED_TICK_S, [
        ("fuel_level", 8, 0.5, 0.0, False, "%", lambda s, n: s.fuel_level_pct, "fuel_level_pct"),
        ("odometer", 24, 0.1, 0.0, False, "km", lambda s, n: s.odometer_km, None),
        ("constant", 8, 1, 0, False, "", lambda s, n, c=rng.randrange(1, 256): c, None),
    ], guarded=False)
    message(5, "NOISE", 2 * SEEDED_TICK_S, [
        ("noise_a", 16, 1, 0, False, "", lambda s, n: noise["rng"].randrange(1 << 16), None),
        ("noise_b", 16, 1, 0, False, "", lambda s, n: noise["rng"].randrange(1 << 16), None),
        ("fast_counter", 8, 1, 0, False, "", lambda s, n: n % 256, None),
    ], guarded=False)
    database = cantools.database.can.Database(messages=[m for m, *_ in messages])

    def frames() -> list[SeededFrame]:
        tach["rpm"], noise["rng"] = 0.0, random.Random(seed + 1)
        return [SeededFrame(m, period_s, values, checksum_byte) for m, period_s, values, checksum_byte in messages]

    return SeededLayout(seed, database, targets, speed_in_mph, frames)
