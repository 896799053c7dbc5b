"""The naive path as an oracle: every frame decoded by cantools ``Message.decode``, behind the block interface.

Tests hold the compiled decoders and the numpy readers to it; the benchmarks measure against it. The frame ID
rule is the agent's (OBD-II answers from every ECU share the 0x7E8 message, physical requests the 0x7DF one;
standard and extended frames of one number are different frames), and so is the counting (short frames
malformed; an ID no database describes, or a multiplexer value the DBC does not describe, unknown).
"""

from __future__ import annotations

import can
import cantools
import numpy as np

from firmware_bridge.decode.decoder import OBD_REQUEST_ID, OBD_RESPONSE_ID, DecodedBlock, FrameCounts
from firmware_bridge.obd import ids
from firmware_bridge.records import DecodedFrame


class FrameDecoder:
    """Decodes ``can.Message`` objects with one cantools database and keeps :class:`FrameCounts`."""

    def __init__(self, db: cantools.database.Database) -> None:
        self.db = db
        self.counts = FrameCounts()
        self._by_id = {(m.frame_id, m.is_extended_frame): m for m in db.messages}

    def message_for(self, frame_id: int, is_extended: bool) -> cantools.database.Message | None:
        message = self._by_id.get((frame_id, is_extended))
        if message is None and ids.is_response(frame_id, is_extended):
            message = self._by_id.get((OBD_RESPONSE_ID, False))
        elif message is None and ids.is_request(frame_id, is_extended):
            message = self._by_id.get((OBD_REQUEST_ID, False))
        return message

    def decode(self, msg: can.Message) -> DecodedFrame | None:
        """The decoded frame with every signal, or None (counted as unknown or malformed)."""
        message = None if msg.is_error_frame or msg.is_remote_frame else self.message_for(
            msg.arbitration_id, msg.is_extended_id)
        if message is None:
            self.counts.add(unknown=1)
            return None
        if len(msg.data) < message.length:
            self.counts.add(malformed=1)
            return None
        try:
            signals = message.decode(bytes(msg.data), decode_choices=False)
        except cantools.database.DecodeError as exc:
            self.counts.decode_error(exc)
            return None
        self.counts.add(decoded=1)
        return DecodedFrame(msg.timestamp, msg.arbitration_id, message.name, signals)


class CantoolsBlocks:
    """Each row of a block decoded by cantools (multi-PID and ISO-TP answers split first, as the pipeline does)."""

    def __init__(self, pipeline) -> None:
        self.reference = FrameDecoder(pipeline.decoder.db)
        self.db, self.counts = self.reference.db, self.reference.counts
        self.answers = pipeline.obd_answers

    def decode(self, block, every_signal: bool = False) -> DecodedBlock:
        """Rows decoded one at a time; frames of one message and one set of signals gathered into columns, as
        the compiled decoders hand them over (answers split into several frames stay frame by frame)."""
        decoded = DecodedBlock(block, every_signal)
        gathered: dict[str, dict[tuple[str, ...], tuple[list[int], list[dict]]]] = {}
        for row in range(len(block)):
            msg = block.message(row)
            parts = self.answers.split(msg)
            frames = [frame for frame in (self.reference.decode(part) for part in ([msg] if parts is None else parts))
                      if frame is not None]
            if parts is None and len(frames) == 1:
                frame = frames[0]
                rows, signals = gathered.setdefault(frame.message, {}).setdefault(tuple(frame.signals), ([], []))
                rows.append(row)
                signals.append(frame.signals)
            elif frames:
                decoded.one_by_one[row] = frames
        for message, by_names in gathered.items():
            fragments = [(np.array(rows), names, [[signals[name] for signals in frames] for name in names])
                         for names, (rows, frames) in by_names.items()]
            decoded.add(message, np.sort(np.concatenate([f[0] for f in fragments])), fragments)
        return decoded


def use_cantools(pipeline) -> None:
    """The pipeline decodes with cantools per frame from now on; the frame counts are cantools'."""
    pipeline.decoder = CantoolsBlocks(pipeline)
