"""Log replay through the pipeline: blocks of frames, decoded per message, fed in file order.

Blocks come from :func:`read_blocks` (numpy candump parser; python-can for other formats) and are decoded by
:class:`BatchDecoder`. When nothing watches single samples (``stats``), steady driving is fast-forwarded through
the analytics (:class:`FastForward`) and only the frames at the edges go through ``Pipeline.feed_frame``;
otherwise (``replay``, ``report``: points every second) every frame does. Either way the figures are those of
feeding every frame to ``Pipeline.feed`` (tests/test_fast_replay.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from firmware_bridge.analytics.fastforward import FastForward
from firmware_bridge.decode.batch import BatchDecoder, DecodedBlock
from firmware_bridge.sources.frame_blocks import FrameBlock
from firmware_bridge.state.columns import block_samples, commit


def replay_blocks(pipeline, blocks: Iterable[FrameBlock]) -> int:
    """Log blocks through the pipeline in file order: decoded per block; steady driving fast-forwarded through
    the analytics (``stats``: nothing watches single samples), every other frame fed one by one. Returns how
    many samples were fast-forwarded."""
    batch = BatchDecoder(pipeline.decoder, pipeline.obd_answers)
    fast = FastForward(pipeline) if FastForward.usable(pipeline) else None
    for block in blocks:
        decoded = batch.decode(block, every_signal=bool(pipeline.frame_listeners))
        if fast is None or decoded.one_by_one:
            for frame in decoded.frames():
                pipeline.feed_frame(frame)
        else:
            _fast_forward(pipeline, fast, decoded)
        if len(block):
            pipeline.last_t = float(block.t[-1])
            pipeline.bus_bits += int(np.where(block.extended, 67, 47).sum() + 8 * block.length.sum())
    return fast.applied_samples if fast is not None else 0


def _fast_forward(pipeline, fast: FastForward, decoded: DecodedBlock) -> None:
    """Stretches without a break go through FastForward; a frame with one (or whose start the trip's state
    does not allow) goes through ``pipeline.feed_frame``; frames without samples change nothing."""
    samples = block_samples(pipeline.state, decoded.messages, decoded.block.t)
    rows = samples.row
    breaks = np.flatnonzero(fast.breaks(samples))
    lo, n = 0, len(samples)
    while lo < n:
        next_break = breaks[np.searchsorted(breaks, lo)] if len(breaks) and breaks[-1] >= lo else n
        hi = n if next_break == n else int(np.searchsorted(rows, rows[next_break]))
        stop = fast.can_start(samples, lo, hi) if hi > lo else lo
        limit = hi if stop == hi else int(np.searchsorted(rows, rows[stop]))
        if limit > lo:
            fast.apply(samples, lo, limit)
            commit(pipeline.state, samples, lo, limit)
            lo = limit
            continue
        for frame in decoded.frame_at(int(rows[lo])):
            pipeline.feed_frame(frame)
        lo = int(np.searchsorted(rows, rows[lo], side="right"))
