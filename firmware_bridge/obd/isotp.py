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

from firmware_bridge.obd import pids

SINGLE_FRAME, FIRST_FRAME, CONSECUTIVE_FRAME, FLOW_CONTROL = 0x0, 0x1, 0x2, 0x3
FRAME_BYTES = 8
#: Flow control "continue to send", no block-size limit, no separation time: the whole answer at once.
FLOW_CONTROL_CONTINUE = (0x30, 0x00, 0x00)
_PHYSICAL_OFFSET_11BIT = 8  # 0x7E8+n answers requests to 0x7E0+n (ISO 15765-4)
_POSITIVE_01 = pids.SERVICE_01 + pids.POSITIVE_RESPONSE_OFFSET


def is_obd_response(msg: can.Message) -> bool:
    """An ECU's diagnostic answer: 0x7E8-0x7EF, or 29-bit 0x18DAF1xx."""
    if msg.is_extended_id:
        return msg.arbitration_id & 0x1FFFFF00 == 0x18DAF100
    return 0x7E8 <= msg.arbitration_id <= 0x7EF


def pci_type(msg: can.Message) -> int | None:
    """The ISO-TP frame type in the high nibble of the first data byte."""
    return msg.data[0] >> 4 if msg.data else None


def flow_control(answer: can.Message) -> can.Message:
    """Flow control for a first frame, addressed to the answering ECU's physical request ID."""
    if answer.is_extended_id:  # 18 DA F1 <ecu> answers 18 DA <ecu> F1
        ecu = answer.arbitration_id & 0xFF
        target = 0x18DA00F1 | (ecu << 8)
    else:
        target = answer.arbitration_id - _PHYSICAL_OFFSET_11BIT
    data = FLOW_CONTROL_CONTINUE + (pids.PADDING,) * (FRAME_BYTES - len(FLOW_CONTROL_CONTINUE))
    return can.Message(arbitration_id=target, is_extended_id=answer.is_extended_id, data=data,
                       timestamp=answer.timestamp, channel=answer.channel)


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


class ObdAnswers:
    """Turns OBD-II answers into single-PID single frames; every other frame is left alone.

    `split(msg)` returns None for a frame to use as it is (the common case, kept cheap), else the frames to use
    instead: [] while a multi-frame answer is incomplete, the single-PID frames once it is (or once a single
    frame carrying several PIDs arrives). Answers that cannot be split (another service, an unknown PID) come
    back as the raw frames they arrived in, so nothing is lost or invented.
    """

    def __init__(self) -> None:
        self._transfers: dict[tuple[int, bool], _Transfer] = {}

    def split(self, msg: can.Message) -> Sequence[can.Message] | None:
        data = msg.data
        if not data or not is_obd_response(msg) or msg.is_error_frame or msg.is_remote_frame:
            return None
        kind = data[0] >> 4
        key = (msg.arbitration_id, msg.is_extended_id)
        if kind == SINGLE_FRAME:
            if key in self._transfers:
                return self._abandon(key) + self._single(msg, data)
            return self._single_or_none(msg, data)
        if kind == FIRST_FRAME:
            return self._first(key, msg, data)
        if kind == CONSECUTIVE_FRAME:
            return self._consecutive(key, msg, data)
        return None

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

    def _first(self, key, msg: can.Message, data) -> list[can.Message]:
        abandoned = self._abandon(key) if key in self._transfers else []
        length = ((data[0] & 0x0F) << 8) | data[1] if len(data) > 1 else 0
        if length < FRAME_BYTES or len(data) < FRAME_BYTES:  # not a valid first frame: leave it to the decoder
            return abandoned + [msg]
        self._transfers[key] = _Transfer(length, bytearray(data[2:]), [msg])
        return abandoned

    def _consecutive(self, key, msg: can.Message, data) -> list[can.Message] | None:
        transfer = self._transfers.get(key)
        if transfer is None:
            return None  # a stray consecutive frame: not ours to reassemble
        if data[0] & 0x0F != transfer.next_sequence:
            return self._abandon(key) + [msg]
        transfer.frames.append(msg)
        transfer.payload += data[1:]
        transfer.next_sequence = (transfer.next_sequence + 1) & 0x0F
        if len(transfer.payload) < transfer.length:
            return []
        del self._transfers[key]
        pieces = split_mode01(bytes(transfer.payload[:transfer.length]))
        return transfer.frames if pieces is None else single_pid_frames(msg, pieces)

    def _abandon(self, key) -> list[can.Message]:
        """An answer cut short (a new one began, a frame was lost): its frames go on unchanged."""
        return self._transfers.pop(key).frames
