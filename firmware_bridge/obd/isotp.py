"""OBD-II answers as the DBC reads them: ISO-TP (ISO 15765-2) reassembly and the split of multi-PID answers.

A mode 01 request may ask for up to six PIDs (SAE J1979). The ECU answers them in one message: a single frame
when the payload fits in 7 bytes, else a first frame `1L LL ...` and consecutive frames `2N ...` sent once the
tester has answered with flow control `30 00 00` on the ECU's physical request ID. `dbc/obd2.dbc` describes
single-PID single frames, so every answer is turned into those (with the answer's timestamp) before decoding,
by the same code for live buses and for log replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import can

from firmware_bridge.obd import ids, pids

SINGLE_FRAME, FIRST_FRAME, CONSECUTIVE_FRAME, FLOW_CONTROL = 0x0, 0x1, 0x2, 0x3
FRAME_BYTES = 8
#: Flow control "continue to send", no block-size limit, no separation time: the whole answer at once.
FLOW_CONTROL_CONTINUE = (0x30, 0x00, 0x00)
_POSITIVE_01 = pids.SERVICE_01 + pids.POSITIVE_RESPONSE_OFFSET


def is_obd_response(msg: can.Message) -> bool:
    """An ECU's diagnostic answer (see obd/ids.py)."""
    return ids.is_response(msg.arbitration_id, msg.is_extended_id)


def pci_type(msg: can.Message) -> int | None:
    """The ISO-TP frame type in the high nibble of the first data byte."""
    return msg.data[0] >> 4 if msg.data else None


def flow_control(answer: can.Message) -> can.Message:
    """Flow control for a first frame, addressed to the answering ECU's physical request ID."""
    target = ids.response_to_physical_request(answer.arbitration_id, answer.is_extended_id)
    data = FLOW_CONTROL_CONTINUE + (pids.PADDING,) * (FRAME_BYTES - len(FLOW_CONTROL_CONTINUE))
    return can.Message(arbitration_id=target, is_extended_id=answer.is_extended_id, data=data,
                       timestamp=answer.timestamp, channel=answer.channel)


def single_frame_payload(data) -> bytes | None:
    """The payload of a single frame `0L b1 .. bL`, or None when the length byte does not fit the frame."""
    length = data[0] & 0x0F if data and data[0] >> 4 == SINGLE_FRAME else 0
    return bytes(data[1:1 + length]) if 0 < length < len(data) else None


def split_mode01(payload: bytes) -> list[tuple[int, bytes]] | None:
    """`41 p1 A.. p2 B..` cut into (pid, data) by the J1979 data lengths; None unless it is exactly that."""
    if len(payload) < 2 or payload[0] != _POSITIVE_01:
        return None
    pieces = []
    i = 1
    while i < len(payload):
        n = pids.DATA_BYTES.get(payload[i])
        if n is None or i + 1 + n > len(payload):
            return None
        pieces.append((payload[i], bytes(payload[i + 1:i + 1 + n])))
        i += 1 + n
    return pieces


def single_pid_frames(answer: can.Message, pieces: list[tuple[int, bytes]]) -> list[can.Message]:
    """One `0N 41 PID A ..` frame per piece, with the answer's ID, channel and timestamp."""
    frames = []
    for pid, data in pieces:
        body = bytes((2 + len(data), _POSITIVE_01, pid)) + data
        frames.append(can.Message(
            timestamp=answer.timestamp, arbitration_id=answer.arbitration_id, is_extended_id=answer.is_extended_id,
            channel=answer.channel, data=body + bytes((pids.PADDING,)) * (FRAME_BYTES - len(body))))
    return frames


@dataclass
class _Transfer:
    """A multi-frame answer being received from one ECU."""

    length: int
    payload: bytearray
    frames: list[can.Message] = field(default_factory=list)
    next_sequence: int = 1


class Reassembler:
    """First and consecutive frames to whole ISO-TP messages, one transfer per answering ID.

    `feed` gives (frames released as they are, the transfer it completed or None): a transfer cut short (a new
    first frame, a lost frame) releases its frames unchanged; a consecutive frame nobody expects gives None.
    """

    def __init__(self) -> None:
        self._transfers: dict[tuple[int, bool], _Transfer] = {}

    def pending(self, key: tuple[int, bool]) -> bool:
        return key in self._transfers

    def abandon(self, key: tuple[int, bool]) -> list[can.Message]:
        """An answer cut short (a new one began, a frame was lost): its frames go on unchanged."""
        transfer = self._transfers.pop(key, None)
        return transfer.frames if transfer is not None else []

    def feed(self, key: tuple[int, bool], msg: can.Message) -> tuple[list[can.Message] | None, _Transfer | None]:
        data = msg.data
        if data[0] >> 4 == FIRST_FRAME:
            abandoned = self.abandon(key)
            length = ((data[0] & 0x0F) << 8) | data[1] if len(data) > 1 else 0
            if length < FRAME_BYTES or len(data) < FRAME_BYTES:  # not a valid first frame: leave it be
                return abandoned + [msg], None
            self._transfers[key] = _Transfer(length, bytearray(data[2:]), [msg])
            return abandoned, None
        transfer = self._transfers.get(key)
        if transfer is None:
            return None, None  # a stray consecutive frame: not ours to reassemble
        if data[0] & 0x0F != transfer.next_sequence:
            return self.abandon(key) + [msg], None
        transfer.frames.append(msg)
        transfer.payload += data[1:]
        transfer.next_sequence = (transfer.next_sequence + 1) & 0x0F
        if len(transfer.payload) < transfer.length:
            return [], None
        del self._transfers[key]
        del transfer.payload[transfer.length:]
        return [], transfer


class ObdAnswers:
    """Turns OBD-II answers into single-PID single frames; every other frame is left alone.

    `split(msg)` returns None for a frame to use as it is (the common case, kept cheap), else the frames to use
    instead: [] while a multi-frame answer is incomplete, the single-PID frames once it is (or once a single
    frame carrying several PIDs arrives). Answers that cannot be split (another service, an unknown PID) come
    back as the raw frames they arrived in, so nothing is lost or invented.
    """

    def __init__(self) -> None:
        self._reassembly = Reassembler()

    def split(self, msg: can.Message) -> Sequence[can.Message] | None:
        data = msg.data
        if not data or not is_obd_response(msg) or msg.is_error_frame or msg.is_remote_frame:
            return None
        kind = data[0] >> 4
        key = (msg.arbitration_id, msg.is_extended_id)
        if kind == SINGLE_FRAME:
            if self._reassembly.pending(key):
                return self._reassembly.abandon(key) + self._single(msg, data)
            return self._single_or_none(msg, data)
        if kind not in (FIRST_FRAME, CONSECUTIVE_FRAME):
            return None
        released, done = self._reassembly.feed(key, msg)
        if done is None:
            return released
        pieces = split_mode01(bytes(done.payload))
        return done.frames if pieces is None else single_pid_frames(msg, pieces)

    @staticmethod
    def _single_or_none(msg: can.Message, data) -> list[can.Message] | None:
        length = data[0]
        if length < 3 or length >= len(data) or data[1] != _POSITIVE_01:
            return None
        n = pids.DATA_BYTES.get(data[2])
        if n is None or length == 2 + n:  # one PID, or one we cannot measure: the DBC reads the frame as it is
            return None
        pieces = split_mode01(bytes(data[1:1 + length]))
        return None if pieces is None else single_pid_frames(msg, pieces)

    def _single(self, msg: can.Message, data) -> list[can.Message]:
        frames = self._single_or_none(msg, data)
        return [msg] if frames is None else frames


class Payloads:
    """Whole diagnostic answers (any service) by answering ID: single frames at once, multi-frame ones when
    complete. `feed(msg)` gives the payload a frame completes, or None."""

    def __init__(self) -> None:
        self._reassembly = Reassembler()

    def feed(self, msg: can.Message) -> bytes | None:
        data = msg.data
        if not data or not is_obd_response(msg) or msg.is_error_frame or msg.is_remote_frame:
            return None
        key = (msg.arbitration_id, msg.is_extended_id)
        kind = data[0] >> 4
        if kind == SINGLE_FRAME:
            self._reassembly.abandon(key)
            return single_frame_payload(data)
        if kind not in (FIRST_FRAME, CONSECUTIVE_FRAME):
            return None
        _, done = self._reassembly.feed(key, msg)
        return None if done is None else bytes(done.payload)
