"""Blocks of frames to physical signal values, per message with numpy, counting what cannot be decoded.

Each frame ID is resolved once to its cantools message (OBD-II responses from every ECU, 0x7E8-0x7EF and the
29-bit 0x18DAF1xx range, share the 0x7E8 layout; physical requests share the 0x7DF one) and to a layout
compiled for the signals in use (:mod:`firmware_bridge.decode.compiled`). A block's frames are grouped by
message, checked for length, and each group is decoded at once; multiplexed messages split their group by
multiplexer value, level by level. The values are cantools' ``Message.decode(decode_choices=False)``, bit for bit
(tests/test_decode_differential.py). Unknown IDs and frames shorter than their message are counted, never fatal.

The few frames that need Python go one by one, at their place in the stream: OBD-II answers that must be
reassembled or split (ISO-TP, several PIDs in one answer; see :class:`ObdAnswers`), whose single-PID frames are
then decoded as a block of their own, and messages the compiled layouts cannot reproduce, which cantools decodes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

import cantools
import numpy as np

from firmware_bridge.decode.compiled import Fragment, MessageLayout, compile_message
from firmware_bridge.decode.layout import Unsupported
from firmware_bridge.groups import group_rows
from firmware_bridge.obd import ids as obd_ids
from firmware_bridge.obd import pids
from firmware_bridge.obd.isotp import ObdAnswers
from firmware_bridge.records import DecodedFrame, FrameBlock, block_of_messages

OBD_RESPONSE_ID = 0x7E8
OBD_REQUEST_ID = 0x7DF
#: A message the compiled layouts leave to cantools.
CANTOOLS = None

_POSITIVE_01 = pids.SERVICE_01 + pids.POSITIVE_RESPONSE_OFFSET
#: J1979 data bytes per mode 01 PID (0 = unknown PID), for spotting answers ObdAnswers would split.
_PID_BYTES = np.zeros(256, dtype=np.int16)
for _pid, _n in pids.DATA_BYTES.items():
    _PID_BYTES[_pid] = _n


def obd_alias(frame_id: int, is_extended: bool) -> int | None:
    """The bundled OBD-II message ID another ECU's response or request shares, or None."""
    if obd_ids.is_response(frame_id, is_extended):
        return OBD_RESPONSE_ID
    if obd_ids.is_request(frame_id, is_extended):
        return OBD_REQUEST_ID
    return None


@dataclass
class FrameCounts:
    """What happened to every frame read: the ``frames`` object of the stats JSON."""

    total: int = 0
    decoded: int = 0
    unknown: int = 0
    malformed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "decoded": self.decoded, "unknown": self.unknown, "malformed": self.malformed}

    def add(self, decoded: int = 0, unknown: int = 0, malformed: int = 0) -> None:
        self.total += decoded + unknown + malformed
        self.decoded += decoded
        self.unknown += unknown
        self.malformed += malformed

    def decode_error(self, exc: cantools.database.DecodeError) -> None:
        """A frame cantools refused: a multiplexer value the DBC does not describe (an OBD PID or service we have
        no signals for, a negative response) is data we do not know, not a broken frame."""
        if "multiplexer" in str(exc):
            self.add(unknown=1)
        else:
            self.add(malformed=1)


class Decoder:
    """Decodes :class:`FrameBlock` objects with one cantools database into the ``wanted`` signals of each
    message (every signal when ``wanted`` is None, or per call with ``every_signal``); keeps :class:`FrameCounts`.

    ``answers`` turns OBD-II answers into single-PID frames before they are decoded (ISO-TP reassembly, answers
    carrying several PIDs); without it, answers are decoded as they arrived.
    """

    def __init__(self, db: cantools.database.Database, wanted: Mapping[str, Collection[str]] | None,
                 answers: ObdAnswers | None = None) -> None:
        self.db = db
        self.wanted = wanted
        self.answers = answers
        self.counts = FrameCounts()
        # A standard and an extended frame with the same number are different frames (cantools' own lookup
        # by number alone would let one shadow the other); later messages win, as in cantools.
        self._by_id = {(m.frame_id, m.is_extended_frame): m for m in db.messages}
        self._messages: dict[tuple[int, bool], cantools.database.Message | None] = {}
        self._layouts: dict[tuple[str, bool], MessageLayout | None] = {}
        self._multi_frame_seen = False  # once an ISO-TP first frame appears, every answer goes through ObdAnswers

    def decode(self, block: FrameBlock, every_signal: bool = False) -> "DecodedBlock":
        """Counts the block's frames and decodes them per message (every signal, or only the wanted ones)."""
        decoded = DecodedBlock(block, every_signal)
        usual = ~(block.error | block.remote)
        self.counts.add(unknown=len(block) - int(usual.sum()))  # error and remote frames
        answer_rows = self._answer_rows(block)
        if len(answer_rows):
            usual[answer_rows] = False
            self._decode_answers(block, answer_rows, decoded)
        self._decode_rows(block, np.flatnonzero(usual), decoded)
        return decoded

    def unknown_ids(self) -> list[tuple[int, bool]]:
        """(frame ID, extended) of every ID seen that no loaded database describes, lowest first."""
        return sorted(key for key, message in self._messages.items() if message is None)

    # -- frame ID -> message -> layout ---------------------------------------------------------------------
    def message_for(self, frame_id: int, is_extended: bool) -> cantools.database.Message | None:
        key = (frame_id, is_extended)
        try:
            return self._messages[key]
        except KeyError:
            pass
        message = self._by_id.get(key)
        if message is None:
            alias = obd_alias(frame_id, is_extended)
            message = None if alias is None else self._by_id.get((alias, False))
        self._messages[key] = message
        return message

    def layout_for(self, message: cantools.database.Message, every_signal: bool) -> MessageLayout | None:
        """The message's layout for the wanted signals (or all), built on first use; CANTOOLS if it has none."""
        key = (message.name, every_signal)
        try:
            return self._layouts[key]
        except KeyError:
            pass
        wanted = None if every_signal or self.wanted is None else self.wanted.get(message.name, ())
        try:
            layout = compile_message(message, wanted)
        except Unsupported:  # cantools decodes it (the tests list which messages and why)
            layout = CANTOOLS
        self._layouts[key] = layout
        return layout

    # -- decoding ------------------------------------------------------------------------------------------
    def _decode_rows(self, block: FrameBlock, rows: np.ndarray, decoded: "DecodedBlock") -> None:
        """The usual frames at ``rows``, grouped by message; unknown IDs counted, cantools' messages one by one."""
        if not len(rows):
            return
        groups: dict[str, tuple[MessageLayout, list[np.ndarray]]] = {}
        for key, part in group_rows(block.id_keys()[rows]):  # by frame ID, each ID's rows in file order
            key_rows = rows[part]
            message = self.message_for(key & 0xFFFFFFFF, bool(key >> 32))
            if message is None:
                self.counts.add(unknown=len(key_rows))
                continue
            layout = self.layout_for(message, decoded.every_signal)
            if layout is CANTOOLS:
                for row in key_rows.tolist():
                    decoded.one_by_one[row] = self._cantools_frame(block, row, message)
            else:
                groups.setdefault(message.name, (layout, []))[1].append(key_rows)
        for layout, parts in groups.values():
            self._decode_group(block, layout, np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0],
                               decoded)

    def _decode_group(self, block: FrameBlock, layout: MessageLayout, rows: np.ndarray,
                      decoded: "DecodedBlock") -> None:
        long_enough = block.length[rows] >= layout.length
        short = len(rows) - int(long_enough.sum())
        rows = rows[long_enough]
        if not len(rows):
            self.counts.add(malformed=short)
            return
        known, fragments = layout.decode_many(block.data[rows])
        known_count = int(known.sum())
        self.counts.add(decoded=known_count, unknown=len(rows) - known_count, malformed=short)
        decoded.add(layout.name, rows[known], [(rows[local], names, columns) for local, names, columns in fragments])

    def _cantools_frame(self, block: FrameBlock, row: int, message: cantools.database.Message) -> list[DecodedFrame]:
        """One frame of a message the compiled layouts leave to cantools."""
        frame = self._cantools_decode(float(block.t[row]), int(block.frame_id[row]),
                                      bytes(block.data[row, :block.length[row]]), message)
        return [] if frame is None else [frame]

    def _cantools_decode(self, t: float, frame_id: int, data: bytes,
                         message: cantools.database.Message) -> DecodedFrame | None:
        if len(data) < message.length:
            self.counts.add(malformed=1)
            return None
        try:
            signals = message.decode(data, decode_choices=False)
        except cantools.database.DecodeError as exc:
            self.counts.decode_error(exc)
            return None
        self.counts.add(decoded=1)
        return DecodedFrame(t, frame_id, message.name, signals)

    # -- OBD-II answers ObdAnswers turns into other frames -------------------------------------------------
    def _answer_rows(self, block: FrameBlock) -> np.ndarray:
        """OBD-II answers ObdAnswers would reassemble or split (its cheap common case stays vectorised)."""
        if self.answers is None:
            return np.zeros(0, dtype=np.int64)
        obd = obd_ids.response_mask(block.frame_id, block.extended)
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

    def _decode_answers(self, block: FrameBlock, rows: np.ndarray, decoded: "DecodedBlock") -> None:
        """Answers through ObdAnswers in file order; the frames they become decoded together, kept at their row."""
        frames, sources = [], []
        for row in rows.tolist():
            msg = block.message(row)
            parts = self.answers.split(msg)
            for part in [msg] if parts is None else parts:
                frames.append(part)
                sources.append(row)
            decoded.one_by_one[row] = []
        if not frames:
            return
        singles = DecodedBlock(block_of_messages(frames), decoded.every_signal)
        self._decode_rows(singles.block, np.arange(len(frames)), singles)
        for single_row, slot in enumerate(singles.slots()):
            decoded.one_by_one[sources[single_row]].extend(_slot_frames(slot))


Slot = DecodedFrame | list[DecodedFrame] | None


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
        """The decoded frames in file order (only frames with wanted signals, unless every_signal)."""
        for slot in self.slots():
            yield from _slot_frames(slot)

    def slots(self) -> list[Slot]:
        """Per block row: its decoded frame, the frames it became (one by one), or None."""
        block = self.block
        slots: list[Slot] = [None] * len(block)
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
        return slots

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


def _slot_frames(slot: Slot) -> list[DecodedFrame]:
    if slot is None:
        return []
    return slot if isinstance(slot, list) else [slot]


def _dicts(names: tuple[str, ...], columns: list) -> list[dict]:
    values = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in columns]
    if len(names) == 1:
        [signal] = names
        return [{signal: value} for value in values[0]]
    return [dict(zip(names, row_values)) for row_values in zip(*values)]

