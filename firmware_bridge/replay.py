"""Log replay through the pipeline: blocks of frames in file order, GPS fixes between them."""

from __future__ import annotations

from collections.abc import Iterable

from firmware_bridge.records import DecodedFrame, FrameBlock
from firmware_bridge.sources.read_ahead import read_ahead


def replay_blocks(pipeline, blocks: Iterable[FrameBlock | DecodedFrame]) -> None:
    """Feed a log's blocks (read on a thread ahead of the analytics) and GPS fixes to the pipeline."""
    for block in read_ahead(blocks):
        if isinstance(block, DecodedFrame):  # a GPS fix between CAN blocks (sources/gps.py)
            pipeline.feed_frame(block)
        else:
            pipeline.feed_block(block)
