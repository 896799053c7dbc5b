"""The naive path as an oracle: every frame decoded by cantools ``Message.decode``, behind the block interface.

Tests hold the compiled decoders and the numpy readers to it; the benchmarks measure against it.
"""

from __future__ import annotations

from firmware_bridge.decode.batch import DecodedBlock
from firmware_bridge.decode.decoder import FrameDecoder


class CantoolsBlocks:
    """Each row of a block decoded by cantools (multi-PID and ISO-TP answers split first, as the pipeline does)."""

    def __init__(self, pipeline) -> None:
        self.reference = FrameDecoder(pipeline.decoder.db)
        self.answers = pipeline.obd_answers

    def decode(self, block, every_signal: bool = False) -> DecodedBlock:
        decoded = DecodedBlock(block, every_signal)
        for row in range(len(block)):
            msg = block.message(row)
            parts = self.answers.split(msg)
            frames = (self.reference.decode(part) for part in ([msg] if parts is None else parts))
            decoded.one_by_one[row] = [frame for frame in frames if frame is not None]
        return decoded


def use_cantools(pipeline) -> None:
    """The pipeline decodes with cantools per frame from now on; the frame counts are cantools'."""
    pipeline.batch = CantoolsBlocks(pipeline)
    pipeline.decoder = pipeline.batch.reference
