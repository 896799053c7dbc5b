"""The small records that flow between pipeline stages.

sources yield ``can.Message`` (python-can's own type) or :class:`FrameBlock` (many frames as numpy columns) ->
decode yields :class:`DecodedFrame` -> vehicle state yields a :class:`SampleBlock` -> the trip tracker splits it
into :class:`Segment` objects -> analytics yield trip summaries and :class:`Point` for the sinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import NamedTuple

import can
import numpy as np

from firmware_bridge.groups import group_rows


class DecodedFrame(NamedTuple):
    """One frame decoded by a DBC message: physical values by signal name."""

    t: float
    frame_id: int
    message: str
    signals: dict[str, float]


@dataclass
class Point:
    """One time-series point for the sinks (InfluxDB line protocol model), time in Unix seconds."""

    measurement: str
    t: float
    fields: dict[str, float | int | str | bool]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class SampleBlock:
    """The accepted samples of a block of frames, in the order the vehicle state emits them (frame order,
    then the message's route order), as columns; quantities by index into ``quantities``.

    ``frame`` orders the frames (a key per decoded frame): a sample sees the values of its whole frame.
    ``before`` holds each quantity's (time, value) from before the block, so the value of any quantity at any
    sample (``latest``) is known without the state having to stop at every frame.
    """

    quantities: tuple[str, ...]
    t: np.ndarray  # float64, frame time
    qid: np.ndarray  # int64, index into quantities
    value: np.ndarray  # float64
    frame: np.ndarray  # int64, non-decreasing
    before: dict[str, tuple[float, float]]
    ids: dict[str, int] = field(repr=False)  # quantity -> its index in quantities (the vehicle state's own)
    _positions: dict[int, np.ndarray] | None = field(default=None, repr=False)
    _frames: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _at: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # the last ``at``, its frames

    def __len__(self) -> int:
        return len(self.t)

    def index(self, quantity: str) -> int:
        """The quantity's id (-1: no route gives it)."""
        return self.ids.get(quantity, -1)

    def _mine(self, q: int) -> np.ndarray:
        """Positions of quantity q's samples (every quantity's found in one pass over the block)."""
        if self._positions is None:
            small = self.qid.astype(np.uint8) if len(self.quantities) < 256 else self.qid  # a radix sort
            self._positions = dict(group_rows(small))
        return self._positions.get(q, _NO_POSITIONS)

    def of(self, quantity: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Positions of the quantity's samples in [lo, hi)."""
        mine = self._mine(self.index(quantity))
        if not len(mine) or (lo <= mine[0] and (hi is None or mine[-1] < hi)):
            return mine
        start, stop = np.searchsorted(mine, (lo, len(self) if hi is None else hi)).tolist()
        return mine[start:stop]

    def _newest(self, quantity: str, at: np.ndarray) -> np.ndarray | None:
        """Position of the quantity's newest sample up to the end of each frame of ``at`` (-1: none yet); None:
        the block has no sample of it."""
        q = self.index(quantity)
        mine = self._mine(q)
        if not len(mine):
            return None
        if q not in self._frames:
            self._frames[q] = self.frame[mine]
        if self._at is None or self._at[0] is not at:  # the analytics ask for several quantities at once
            self._at = (at, self.frame[at])
        j = np.searchsorted(self._frames[q], self._at[1], side="right") - 1  # frames never decrease
        return np.where(j >= 0, mine[np.maximum(j, 0)], -1)

    def latest(self, quantity: str, at: np.ndarray, default: float = np.nan) -> tuple[np.ndarray, np.ndarray]:
        """(value, present) of the quantity as the car last gave it at each sample ``at`` (``default`` where
        it has given none yet)."""
        previous = self.before.get(quantity)
        fallback = default if previous is None else previous[1]
        if (newest := self._newest(quantity, at)) is None:
            return np.full(len(at), fallback), np.full(len(at), previous is not None)
        given = newest >= 0
        return np.where(given, self.value[newest], fallback), given | (previous is not None)

    def latest_t(self, quantity: str, at: np.ndarray) -> np.ndarray:
        """Time of the quantity's newest value at each sample ``at`` (-inf: none yet)."""
        previous = self.before.get(quantity)
        fallback = -np.inf if previous is None else previous[0]
        if (newest := self._newest(quantity, at)) is None:
            return np.full(len(at), fallback)
        return np.where(newest >= 0, self.t[newest], fallback)


_NO_POSITIONS = np.zeros(0, dtype=np.int64)


@dataclass
class Segment:
    """Samples [lo, hi) of a block that the trip tracker accounted in one go, for listeners (points, report).

    ``trip`` is the trip open during the segment (None: no trip). ``fuel_lph`` holds, per fuel source, the
    positions of the samples that gave an estimate and the estimate (L/h, calibrated) after each, and
    ``fuel_lph_before`` the estimates before the segment, so the best fuel rate at any sample is known.
    """

    samples: SampleBlock
    lo: int
    hi: int
    trip: object | None
    fuel_lph: dict[str, tuple[np.ndarray, np.ndarray]]
    fuel_lph_before: dict[str, float]

    @property
    def t(self) -> np.ndarray:
        return self.samples.t[self.lo:self.hi]

    @property
    def qid(self) -> np.ndarray:
        return self.samples.qid[self.lo:self.hi]

    @property
    def value(self) -> np.ndarray:
        return self.samples.value[self.lo:self.hi]

    def fuel_rate_lph(self, positions: np.ndarray, sources: tuple[str, ...]) -> list[tuple[str, float] | None]:
        """The best (source, L/h) known right after each of these samples (positions within the segment),
        ``sources`` best first."""
        answers: list[tuple[str, float] | None] = [None] * len(positions)
        for source in reversed(sources):  # worst first: a better source's estimate replaces it
            before = self.fuel_lph_before.get(source)
            values = [before] * len(positions)
            if source in self.fuel_lph:
                at, lph = self.fuel_lph[source]
                last = np.searchsorted(at, self.lo + positions, side="right") - 1
                values = [value if j >= 0 else before
                          for j, value in zip(last.tolist(), lph[np.maximum(last, 0)].tolist())]
            answers = [(source, value) if value is not None else answer for answer, value in zip(answers, values)]
        return answers


#: Bits on the wire besides the data, without stuffing: an 11-bit frame, a 29-bit one (for the bus load).
OVERHEAD_BITS_11, OVERHEAD_BITS_29 = 47, 67


@dataclass
class FrameBlock:
    """Consecutive frames of a log, in file order; ``data`` rows are zero-padded to the widest frame."""

    t: np.ndarray  # float64, Unix seconds (exactly float() of the logged text)
    frame_id: np.ndarray  # uint32
    extended: np.ndarray  # bool
    remote: np.ndarray  # bool
    error: np.ndarray  # bool
    length: np.ndarray  # int16, data bytes
    data: np.ndarray  # uint8 (frames, width)

    def __len__(self) -> int:
        return len(self.t)

    def id_keys(self) -> np.ndarray:
        """Each frame's ID with its format: a standard and an extended frame of the same number are different
        frames (``key & 0xFFFFFFFF`` is the ID, ``key >> 32`` the extended flag)."""
        return self.frame_id.astype(np.uint64) | (self.extended.astype(np.uint64) << np.uint64(32))

    def wire_bits(self) -> int:
        """Bits these frames took on the bus, stuffing aside (error frames are the controller's reports)."""
        frames = ~self.error
        overhead = np.where(self.extended[frames], OVERHEAD_BITS_29, OVERHEAD_BITS_11)
        return int(overhead.sum() + 8 * self.length[frames].sum())

    def select(self, rows: np.ndarray) -> "FrameBlock":
        """The frames at ``rows`` (a mask or indices), in order."""
        return FrameBlock(self.t[rows], self.frame_id[rows], self.extended[rows], self.remote[rows],
                          self.error[rows], self.length[rows], self.data[rows])

    def message(self, row: int) -> can.Message:
        """One frame as python-can's record (for the rare frames decoded one by one)."""
        if self.error[row]:
            return can.Message(timestamp=float(self.t[row]), is_error_frame=True)
        return can.Message(timestamp=float(self.t[row]), arbitration_id=int(self.frame_id[row]),
                           is_extended_id=bool(self.extended[row]), is_remote_frame=bool(self.remote[row]),
                           dlc=int(self.length[row]), data=None if self.remote[row] else
                           bytes(self.data[row, :self.length[row]]))


def block_of_messages(messages: list[can.Message]) -> FrameBlock:
    """python-can records as one block (a live bus's frames, log formats without a block reader of their own).

    Each column is gathered by one C-level pass (``map`` + ``np.fromiter``): a live bus at full load hands over
    thousands of messages a second, and a Python loop per frame here would cost more than decoding them."""
    count = len(messages)
    payloads = [msg.data for msg in messages]
    length = np.fromiter(map(len, payloads), dtype=np.int16, count=count)
    width = max(8, int(length.max(initial=0)))
    if length.min(initial=width) < width:
        pad = bytes(width)
        payloads = [payload + pad[len(payload):] for payload in payloads]
    data = np.frombuffer(bytearray().join(payloads), dtype=np.uint8).reshape(count, width)

    def column(name: str, dtype) -> np.ndarray:
        return np.fromiter(map(attrgetter(name), messages), dtype=dtype, count=count)

    return FrameBlock(column("timestamp", np.float64), column("arbitration_id", np.uint32),
                      column("is_extended_id", bool), column("is_remote_frame", bool),
                      column("is_error_frame", bool), length, data)


def join_blocks(blocks: list[FrameBlock]) -> FrameBlock:
    """Consecutive blocks as one, ``data`` padded to the widest frame and to at least 8 bytes (a classic frame's
    width, which message layouts read whole even from a log of shorter frames)."""
    width = max(8, *(b.data.shape[1] for b in blocks))
    if len(blocks) == 1 and blocks[0].data.shape[1] == width:
        return blocks[0]
    columns = {f.name: np.concatenate([getattr(b, f.name) for b in blocks]) for f in fields(FrameBlock)
               if f.name != "data"}
    return FrameBlock(**columns, data=np.concatenate([np.pad(b.data, ((0, 0), (0, width - b.data.shape[1])))
                                                      for b in blocks]))
