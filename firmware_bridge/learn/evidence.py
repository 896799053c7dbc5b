"""The evidence a learner gathers from a bus: OBD-II answers, and what every broadcast frame ID said around them.

Streaming and bounded: a log (or a live bus) goes through in blocks of frames. Per broadcast frame ID it keeps
counts (frames, how often each of its 64 bits flipped between consecutive frames, how often each was 1) and its
last three payloads; per OBD-II answer of a quantity to learn, the answer's value and, for every broadcast ID,
the three latest payloads before it and their age. Answers per quantity are capped: when full, every other one
is dropped and only every other new one is kept from then on, so the samples stay spread over the whole drive.

OBD-II answers are decoded by the project's own path (``dbc/obd2.dbc`` through the batch decoder, multi-PID and
ISO-TP answers split by :class:`ObdAnswers`), the quantities named as the signal map names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.decode.dbc import bundled_dbc_path, load_database
from firmware_bridge.decode.decoder import Decoder
from firmware_bridge.groups import group_rows
from firmware_bridge.obd import ids
from firmware_bridge.obd.isotp import ObdAnswers
from firmware_bridge.records import FrameBlock
from firmware_bridge.state.vehicle import load_signal_map

#: What the learner looks for, in this order (speed and rpm are what a passive car needs first).
QUANTITIES = ("speed_kmh", "engine_rpm", "coolant_c", "throttle_pct", "fuel_level_pct", "map_kpa", "maf_gps")
OBD_MESSAGE = "OBD2_RESPONSE"
#: OBD-II answers kept per quantity (about 17 minutes of a fast PID at 2 Hz before thinning starts).
MAX_SAMPLES = 2048
#: Payloads kept per frame ID and answer: the latest and the two before it (for the bit-boundary test).
HISTORY = 3
BITS = 64


def obd_signals() -> dict[str, str]:
    """quantity -> its OBD-II signal, read from the signal map (the one place that names them)."""
    signals = {}
    for quantity in QUANTITIES:
        for source in load_signal_map().get(quantity, []):
            message, signal = source.split(".", 1)
            if message == OBD_MESSAGE:
                signals[quantity] = signal
    return signals


def _is_diagnostic(block: FrameBlock) -> np.ndarray:
    """OBD-II requests and answers (the one OBD-II ID rule): not broadcast."""
    mask = ids.response_mask(block.frame_id, block.extended)
    keys = block.frame_id.astype(np.int64) | block.extended.astype(np.int64) << 32
    unique, inverse = np.unique(keys, return_inverse=True)
    requests = np.array([ids.is_request(key & 0xFFFFFFFF, bool(key >> 32)) for key in unique.tolist()], dtype=bool)
    return mask | requests[inverse.ravel()]


def payloads(block: FrameBlock) -> np.ndarray:
    """Each frame's first 8 data bytes as one little-endian uint64 (bit n = byte n // 8, bit n % 8)."""
    data = block.data[:, :8]
    if data.shape[1] < 8:
        data = np.pad(data, ((0, 0), (0, 8 - data.shape[1])))
    return np.ascontiguousarray(data).view("<u8").ravel()


def bit_columns(values: np.ndarray) -> np.ndarray:
    """(n, 64) uint8: bit n of each little-endian uint64 in column n."""
    return np.unpackbits(np.ascontiguousarray(values, dtype="<u8").view(np.uint8).reshape(-1, 8), axis=1,
                         bitorder="little")


@dataclass
class FrameIdStats:
    """Everything kept about one broadcast frame ID: counts over the whole drive and its last payloads."""

    frame_id: int
    extended: bool
    column: int  # its column in the samples' payload arrays
    frames: int = 0
    max_length: int = 0
    first_t: float = np.inf
    last_t: float = -np.inf
    flips: np.ndarray = field(default_factory=lambda: np.zeros(BITS, dtype=np.int64))
    ones: np.ndarray = field(default_factory=lambda: np.zeros(BITS, dtype=np.int64))
    history: np.ndarray = field(default_factory=lambda: np.zeros(HISTORY, dtype=np.uint64))
    history_t: np.ndarray = field(default_factory=lambda: np.full(HISTORY, -np.inf))

    @property
    def period_s(self) -> float | None:
        return (self.last_t - self.first_t) / (self.frames - 1) if self.frames > 1 else None

    def constant_bits(self) -> np.ndarray:
        """Bits that never changed (their value: ``ones > 0``)."""
        return self.flips == 0


class QuantitySamples:
    """One quantity's OBD-II values and, per frame ID, the payloads just before each (bounded, thinned)."""

    def __init__(self, capacity: int = MAX_SAMPLES) -> None:
        self.capacity = capacity
        self.n = 0
        self.stride = 1  # keep every stride-th answer
        self._seen = 0
        self.t = np.zeros(capacity)
        self.y = np.zeros(capacity)
        self.payload = np.zeros((capacity, 0, HISTORY), dtype=np.uint64)
        self.age_s = np.zeros((capacity, 0), dtype=np.float32)

    def widen(self, columns: int) -> None:
        extra = columns - self.payload.shape[1]
        if extra > 0:
            self.payload = np.pad(self.payload, ((0, 0), (0, extra), (0, 0)))
            self.age_s = np.pad(self.age_s, ((0, 0), (0, extra)), constant_values=np.inf)

    def add(self, t: np.ndarray, y: np.ndarray, payload: np.ndarray, age_s: np.ndarray) -> None:
        """Answers at times t, with per-column payloads (k, ids, 3) and ages (k, ids), thinned to the stride."""
        for row in range(len(t)):
            self._seen += 1
            if self.n == self.capacity:
                self._thin()
            if (self._seen - 1) % self.stride:
                continue
            self.t[self.n], self.y[self.n] = t[row], y[row]
            self.payload[self.n] = payload[row]
            self.age_s[self.n] = age_s[row]
            self.n += 1

    def _thin(self) -> None:
        half = slice(0, self.n, 2)
        kept = len(range(*half.indices(self.n)))
        for name in ("t", "y", "payload", "age_s"):
            array = getattr(self, name)
            array[:kept] = array[half].copy()
        self.n, self.stride = kept, self.stride * 2


class Evidence:
    """Feed blocks of frames (:meth:`feed`); read ``ids`` and ``samples`` to fit. Memory stays bounded."""

    def __init__(self, capacity: int = MAX_SAMPLES) -> None:
        self.signals = obd_signals()
        database = load_database([bundled_dbc_path("obd2.dbc")], bundled=False)
        wanted = {OBD_MESSAGE: set(self.signals.values())}
        self._obd = Decoder(database, wanted, ObdAnswers())
        self._by_signal = {signal: quantity for quantity, signal in self.signals.items()}
        self.ids: dict[tuple[int, bool], FrameIdStats] = {}
        self.samples = {quantity: QuantitySamples(capacity) for quantity in self.signals}
        self.frames = 0
        self.obd_answers = 0
        self._last_t = -np.inf

    @property
    def columns(self) -> list[FrameIdStats]:
        return sorted(self.ids.values(), key=lambda s: s.column)

    def feed(self, block: FrameBlock) -> None:
        if not len(block):
            return
        self.frames += len(block)
        if block.t[0] < self._last_t:  # a new file, or time went backwards: payloads before it are no guide
            for stats in self.ids.values():
                stats.history_t[:] = -np.inf
        self._last_t = float(block.t[-1])
        usual = ~(block.error | block.remote)
        diagnostic = _is_diagnostic(block)
        answers = self._answers(block.select(usual & diagnostic))
        broadcast = block.select(usual & ~diagnostic & (block.length > 0))
        groups = self._groups(broadcast)
        if answers:
            self._snapshot(answers, groups)
        for stats, t, values, lengths in groups:
            self._count(stats, t, values, lengths)

    def _answers(self, block: FrameBlock) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """quantity -> (times, values) of the OBD-II answers in the block."""
        if not len(block):
            return {}
        found: dict[str, tuple[list[float], list[float]]] = {}
        for frame in self._obd.decode(block).frames():
            for signal, value in frame.signals.items():
                quantity = self._by_signal.get(signal)
                if quantity is not None:
                    times, values = found.setdefault(quantity, ([], []))
                    times.append(frame.t)
                    values.append(float(value))
        self.obd_answers += sum(len(times) for times, _ in found.values())
        return {q: (np.array(times), np.array(values)) for q, (times, values) in found.items()}

    def _groups(self, block: FrameBlock):
        """(stats, times, payloads, lengths) per broadcast frame ID in the block, new IDs registered."""
        if not len(block):
            return []
        values = payloads(block)
        groups = []
        for key, rows in group_rows(block.id_keys()):
            id_key = (key & 0xFFFFFFFF, bool(key >> 32))
            stats = self.ids.get(id_key)
            if stats is None:
                stats = self.ids[id_key] = FrameIdStats(*id_key, column=len(self.ids))
            groups.append((stats, block.t[rows], values[rows], block.length[rows]))
        for samples in self.samples.values():
            samples.widen(len(self.ids))
        return groups

    def _snapshot(self, answers, groups) -> None:
        """For each answer, every ID's three latest payloads at or before it, and the latest one's age (one
        search per ID for the answers of every quantity at once)."""
        times = np.concatenate([t for t, _ in answers.values()])
        payload = np.zeros((len(times), len(self.ids), HISTORY), dtype=np.uint64)
        age = np.full((len(times), len(self.ids)), np.inf, dtype=np.float32)
        in_block = {stats.column: (t, values) for stats, t, values, _ in groups}
        for stats in self.ids.values():
            seq_t, seq_v = stats.history_t, stats.history
            if stats.column in in_block:
                t, values = in_block[stats.column]
                seq_t, seq_v = np.concatenate([seq_t, t]), np.concatenate([seq_v, values])
            last = np.searchsorted(seq_t, times, side="right") - 1
            rows = np.flatnonzero((last >= HISTORY - 1) & np.isfinite(seq_t[np.maximum(last - HISTORY + 1, 0)]))
            for back in range(HISTORY):
                payload[rows, stats.column, HISTORY - 1 - back] = seq_v[last[rows] - back]
            age[rows, stats.column] = times[rows] - seq_t[last[rows]]
        start = 0
        for quantity, (t, y) in answers.items():
            stop = start + len(t)
            self.samples[quantity].add(t, y, payload[start:stop], age[start:stop])
            start = stop

    @staticmethod
    def _count(stats: FrameIdStats, t: np.ndarray, values: np.ndarray, lengths: np.ndarray) -> None:
        previous = stats.history[-1:] if np.isfinite(stats.history_t[-1]) else values[:0]
        chain = np.concatenate([previous, values])
        stats.flips += bit_columns(chain[1:] ^ chain[:-1]).sum(axis=0, dtype=np.int64)
        stats.ones += bit_columns(values).sum(axis=0, dtype=np.int64)
        stats.frames += len(values)
        stats.max_length = max(stats.max_length, int(lengths.max()))
        stats.first_t = min(stats.first_t, float(t[0]))
        stats.last_t = max(stats.last_t, float(t[-1]))
        seq_t = np.concatenate([stats.history_t, t])[-HISTORY:]
        seq_v = np.concatenate([stats.history, values])[-HISTORY:]
        stats.history_t, stats.history = seq_t, seq_v
