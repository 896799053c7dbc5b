"""Replay's decoder: a block of frames decoded per message with numpy, read frame by frame or as columns.

Frames are grouped by ID (OBD-II aliases share their message), checked for length, and each message's group is
decoded at once by its compiled layout; multiplexed messages split their group by multiplexer value, level by
level. Counting follows :class:`FrameDecoder` exactly (shared ``counts``). The few frames that need Python anyway
go through the one-frame decoder at their place in the stream: OBD-II answers that must be reassembled or split
(ISO-TP, several PIDs in one answer; see :class:`ObdAnswers`), and messages left to cantools.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from firmware_bridge.decode.compiled import Fragment, MessageLayout
from firmware_bridge.decode.live import CANTOOLS, LiveDecoder
from firmware_bridge.obd import ids as obd_ids
from firmware_bridge.obd import pids
from firmware_bridge.obd.isotp import ObdAnswers
from firmware_bridge.records import DecodedFrame
from firmware_bridge.sources.frame_blocks import FrameBlock

_POSITIVE_01 = pids.SERVICE_01 + pids.POSITIVE_RESPONSE_OFFSET
#: J1979 data bytes per mode 01 PID (0 = unknown PID), for spotting answers ObdAnswers would split.
_PID_BYTES = np.zeros(256, dtype=np.int16)
for _pid, _n in pids.DATA_BYTES.items():
    _PID_BYTES[_pid] = _n


class BatchDecoder:
    """Decodes :class:`FrameBlock` objects with the layouts and counts of a :class:`LiveDecoder`."""

    def __init__(self, decoder: LiveDecoder, answers: ObdAnswers | None = None) -> None:
        self.decoder = decoder
        self.counts = decoder.counts
        self.answers = answers
        self._multi_frame_seen = False  # once an ISO-TP first frame appears, every answer goes through ObdAnswers

    def decode(self, block: FrameBlock, every_signal: bool = False) -> "DecodedBlock":
        """Counts the block's frames and decodes them per message (every signal, or only the wanted ones)."""
        decoded = DecodedBlock(block, every_signal)
        one_by_one = self._one_by_one_rows(block)
        usual = ~(block.error | block.remote)
        usual[one_by_one] = False
        odd = len(block) - len(one_by_one) - int(usual.sum())  # error and remote frames
        self.counts.total += odd
        self.counts.unknown += odd
        for row in one_by_one.tolist():
            decoded.one_by_one[row] = self._decode_one(block, row, every_signal)
        for layout, message_rows in self._by_message(block, np.flatnonzero(usual), every_signal, decoded):
            self._decode_group(block, layout, message_rows, decoded)
        return decoded

    def frames(self, block: FrameBlock, every_signal: bool = False) -> Iterator[DecodedFrame]:
        """The block's decoded frames in file order (only frames with wanted signals, unless every_signal)."""
        return self.decode(block, every_signal).frames()

    # -- grouping ----------------------------------------------------------------------------------------
    def _one_by_one_rows(self, block: FrameBlock) -> np.ndarray:
        """OBD-II answers ObdAnswers would reassemble or split (its cheap common case stays vectorised)."""
        if self.answers is None:
            return np.zeros(0, dtype=np.int64)
        ids = block.frame_id
        obd = obd_ids.response_mask(ids, block.extended)
        obd &= ~(block.error | block.remote) & (block.length > 0)
        if not obd.any():
            return np.zeros(0, dtype=np.int64)
        kind = block.data[:, 0] >> 4
        if not self._multi_frame_seen and (obd & (kind == 1)).any():
            self._multi_frame_seen = True
        if self._multi_frame_seen:
            return np.flatnonzero(obd)
        length = block.data[:, 0].astype(np.int16)
        pid_bytes = _PID_BYTES[block.data[:, 2]]
        several = ((kind == 0) & (length >= 3) & (length < block.length) & (block.data[:, 1] == _POSITIVE_01)
                   & (pid_bytes > 0) & (length != 2 + pid_bytes))
        return np.flatnonzero(obd & several)

    def _decode_one(self, block: FrameBlock, row: int, every_signal: bool) -> list[DecodedFrame]:
        msg = block.message(row)
        parts = self.answers.split(msg) if self.answers is not None else None
        frames = []
        for part in [msg] if parts is None else parts:
            frame = self.decoder.decode(part, every_signal)
            if frame is not None:
                frames.append(frame)
        return frames

    def _by_message(self, block: FrameBlock, rows: np.ndarray, every_signal: bool, decoded: "DecodedBlock"):
        """(layout, rows) per compiled message; unknown IDs counted, cantools' messages decoded one by one."""
        keys = block.frame_id[rows].astype(np.uint64) | (block.extended[rows].astype(np.uint64) << np.uint64(32))
        unique, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        groups: dict[str, tuple[MessageLayout, list[np.ndarray]]] = {}
        for key, part in zip(unique.tolist(), np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)):
            key_rows = rows[part]
            entry = self.decoder.entry(key & 0xFFFFFFFF, bool(key >> 32), every_signal)
            if entry is None:
                self.counts.total += len(key_rows)
                self.counts.unknown += len(key_rows)
            elif entry[1] is CANTOOLS:
                for row in key_rows.tolist():
                    decoded.one_by_one[row] = self._decode_one(block, row, every_signal)
            else:
                groups.setdefault(entry[0].name, (entry[1], []))[1].append(key_rows)
        for layout, parts in groups.values():
            yield layout, np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0]

    def _decode_group(self, block: FrameBlock, layout: MessageLayout, rows: np.ndarray,
                      decoded: "DecodedBlock") -> None:
        counts = self.counts
        counts.total += len(rows)
        long_enough = block.length[rows] >= layout.length
        counts.malformed += int((~long_enough).sum())
        rows = rows[long_enough]
        if not len(rows):
            return
        known, fragments = layout.decode_many(block.data[rows])
        known_count = int(known.sum())
        counts.decoded += known_count
        counts.unknown += len(rows) - known_count
        decoded.add(layout.name, rows[known], [(rows[local], names, columns) for local, names, columns in fragments])


class DecodedBlock:
    """A block's decoded signals, per message: fragments of (block rows, signal names, value columns).

    Read frame by frame in file order (:meth:`frames`), or as columns (:attr:`messages`) by code that works
    on whole columns. ``one_by_one`` holds the frames of rows decoded one at a time (ObdAnswers, cantools).
    """

    def __init__(self, block: FrameBlock, every_signal: bool) -> None:
        self.block = block
        self.every_signal = every_signal
        self.messages: dict[str, tuple[np.ndarray, list[Fragment]]] = {}  # name -> (known rows, fragments)
        self.one_by_one: dict[int, list[DecodedFrame]] = {}

    def add(self, name: str, rows: np.ndarray, fragments: list[Fragment]) -> None:
        self.messages[name] = (rows, fragments)

    def frames(self) -> Iterator[DecodedFrame]:
        block = self.block
        slots: list[DecodedFrame | list[DecodedFrame] | None] = [None] * len(block)
        for row, frames in self.one_by_one.items():
            slots[row] = frames
        times, ids = block.t.tolist(), block.frame_id.tolist()
        for name, (rows, fragments) in self.messages.items():
            if self.every_signal:
                for row in rows.tolist():
                    slots[row] = DecodedFrame(times[row], ids[row], name, {})
            for frag_rows, names, columns in fragments:
                for row, signals in zip(frag_rows.tolist(), _dicts(names, columns)):
                    slot = slots[row]
                    if slot is None:
                        slots[row] = DecodedFrame(times[row], ids[row], name, signals)
                    else:
                        slot.signals.update(signals)
        for slot in slots:
            if slot is None:
                continue
            if isinstance(slot, list):
                yield from slot
            else:
                yield slot

    def frame_at(self, row: int) -> list[DecodedFrame]:
        """The decoded frame(s) of one row (for the rows replay hands to the per-frame path)."""
        if row in self.one_by_one:
            return self.one_by_one[row]
        for name, (rows, fragments) in self.messages.items():
            at = np.searchsorted(rows, row)
            if at == len(rows) or rows[at] != row:
                continue
            signals: dict = {}
            for frag_rows, names, columns in fragments:
                i = np.searchsorted(frag_rows, row)
                if i < len(frag_rows) and frag_rows[i] == row:
                    signals.update((n, c[i].item() if isinstance(c, np.ndarray) else c[i]) for n, c in zip(names, columns))
            if not signals and not self.every_signal:
                return []
            return [DecodedFrame(float(self.block.t[row]), int(self.block.frame_id[row]), name, signals)]
        return []


def _dicts(names: tuple[str, ...], columns: list) -> list[dict]:
    values = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in columns]
    if len(names) == 1:
        [signal] = names
        return [{signal: value} for value in values[0]]
    return [dict(zip(names, row_values)) for row_values in zip(*values)]
