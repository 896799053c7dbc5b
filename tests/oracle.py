"""The naive path as an oracle: every frame decoded by cantools ``Message.decode``, behind the block interface.

Tests hold the compiled decoders and the numpy readers to it; the benchmarks measure against it.
"""

from __future__ import annotations

import numpy as np

from firmware_bridge.decode.batch import DecodedBlock
from firmware_bridge.decode.decoder import FrameDecoder


class CantoolsBlocks:
    """Each row of a block decoded by cantools (multi-PID and ISO-TP answers split first, as the pipeline does)."""

    def __init__(self, pipeline) -> None:
        self.reference = FrameDecoder(pipeline.decoder.db)
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
    pipeline.batch = CantoolsBlocks(pipeline)
    pipeline.decoder = pipeline.batch.reference
