"""Frames to physical signal values through the cantools database, counting what cannot be decoded.

Each frame ID is resolved once to its cantools message (OBD-II responses from every ECU, 0x7E8-0x7EF and the
29-bit 0x18DAF1xx range, share the 0x7E8 layout; physical requests share the 0x7DF one). Unknown IDs and
frames shorter than their message are counted, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass

import can
import cantools

from firmware_bridge.obd import ids
from firmware_bridge.records import DecodedFrame

OBD_RESPONSE_ID = 0x7E8
OBD_REQUEST_ID = 0x7DF


def _obd_alias(frame_id: int, is_extended: bool) -> int | None:
    """The bundled OBD-II message ID another ECU's response or request shares, or None."""
    if ids.is_response(frame_id, is_extended):
        return OBD_RESPONSE_ID
    if ids.is_request(frame_id, is_extended):
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


class FrameDecoder:
    """Decodes ``can.Message`` objects with one cantools database and keeps :class:`FrameCounts`."""

    def __init__(self, db: cantools.database.Database) -> None:
        self.db = db
        self.counts = FrameCounts()
        self._by_key: dict[tuple[int, bool], cantools.database.Message | None] = {}
        # A standard and an extended frame with the same number are different frames (cantools' own lookup
        # by number alone would let one shadow the other); later messages win, as in cantools.
        self._by_id = {(m.frame_id, m.is_extended_frame): m for m in db.messages}

    def message_for(self, frame_id: int, is_extended: bool) -> cantools.database.Message | None:
        key = (frame_id, is_extended)
        try:
            return self._by_key[key]
        except KeyError:
            pass
        message = self._by_id.get(key)
        if message is None:
            alias = _obd_alias(frame_id, is_extended)
            message = None if alias is None else self._by_id.get((alias, False))
        self._by_key[key] = message
        return message

    def decode(self, msg: can.Message) -> DecodedFrame | None:
        """The decoded frame, or None (counted as unknown or malformed)."""
        self.counts.total += 1
        if msg.is_error_frame or msg.is_remote_frame:
            self.counts.unknown += 1
            return None
        message = self.message_for(msg.arbitration_id, msg.is_extended_id)
        if message is None:
            self.counts.unknown += 1
            return None
        data = msg.data
        if len(data) < message.length:
            self.counts.malformed += 1
            return None
        try:
            signals = message.decode(bytes(data), decode_choices=False)
        except cantools.database.DecodeError as exc:
            # A multiplexer value the DBC does not describe (an OBD PID or service we have no signals for,
            # a negative response) is data we do not know, not a broken frame.
            if "multiplexer" in str(exc):
                self.counts.unknown += 1
            else:
                self.counts.malformed += 1
            return None
        self.counts.decoded += 1
        return DecodedFrame(msg.timestamp, msg.arbitration_id, message.name, signals)

    #: The reference decoder always gives every signal (the pipeline asks for all when raw signals are on).
    decode_all = decode
