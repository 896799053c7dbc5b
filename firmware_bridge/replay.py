"""Log replay through the pipeline: blocks of frames, decoded per message, fed in file order.

Blocks come from :func:`read_blocks` (numpy candump parser; python-can for other formats) and are decoded by
:class:`BatchDecoder`. Steady driving is fast-forwarded through the analytics (:class:`FastForward`) and handed
whole to the listeners that make points (``replay``, ``report``); only the frames at the edges go through
``Pipeline.feed_frame``. With a listener of single frames (raw signal points) every frame does. Either way the
figures and points are those of feeding every frame to ``Pipeline.feed`` (tests/test_fast_replay.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from firmware_bridge.analytics.fastforward import FastForward
from firmware_bridge.decode.batch import BatchDecoder, DecodedBlock
from firmware_bridge.pipeline import OVERHEAD_BITS_11, OVERHEAD_BITS_29
from firmware_bridge.records import DecodedFrame
from firmware_bridge.sources.frame_blocks import FrameBlock
from firmware_bridge.sources.read_ahead import read_ahead
from firmware_bridge.state.columns import block_samples, commit


def replay_blocks(pipeline, blocks: Iterable[FrameBlock]) -> int:
    """Log blocks through the pipeline in file order: decoded per block; steady driving fast-forwarded through
    the analytics when every listener takes stretches, every other frame fed one by one. Returns how many
    samples were fast-forwarded."""
    batch = BatchDecoder(pipeline.decoder, pipeline.obd_answers)
    fast = FastForward(pipeline) if FastForward.usable(pipeline) else None
    for block in read_ahead(blocks):
        if isinstance(block, DecodedFrame):  # a GPS fix between CAN blocks (sources/gps.py)
            pipeline.feed_frame(block)
            pipeline.last_t = block.t
            continue
        decoded = batch.decode(block, every_signal=bool(pipeline.frame_listeners))
        if fast is None or decoded.one_by_one:
            for frame in decoded.frames():
                pipeline.feed_frame(frame)
        else:
            _fast_forward(pipeline, fast, decoded)
        if len(block):
            pipeline.last_t = float(block.t[-1])
            overhead = np.where(block.extended, OVERHEAD_BITS_29, OVERHEAD_BITS_11)
            pipeline.bus_bits += int(overhead.sum() + 8 * block.length.sum())
    return fast.applied_samples if fast is not None else 0


def _fast_forward(pipeline, fast: FastForward, decoded: DecodedBlock) -> None:
    """Stretches without a break go through FastForward and then to the listeners whole; a frame with a break,
    whose start the trip's state does not allow, or due at a listener (a trip rewrite) goes through
    ``pipeline.feed_frame``; frames without samples change nothing."""
    samples = block_samples(pipeline.state, decoded.messages, decoded.block.t)
    rows = samples.row
    breaks = np.flatnonzero(fast.breaks(samples))
    # Newest accepted time so far: the first sample at or after a listener's due time is a search away
    # (never later than the per-sample path would call it, whatever order the log's times are in).
    reached = np.maximum.accumulate(np.where(samples.accepted, samples.t, -np.inf)) if len(samples) else samples.t
    lo, n = 0, len(samples)
    while lo < n:
        next_break = breaks[np.searchsorted(breaks, lo)] if len(breaks) and breaks[-1] >= lo else n
        due = fast.due_t()
        if due is not None:
            next_break = min(next_break, max(lo, int(np.searchsorted(reached, due))))
        hi = n if next_break == n else int(np.searchsorted(rows, rows[next_break]))
        stop = fast.can_start(samples, lo, hi) if hi > lo else lo
        limit = hi if stop == hi else int(np.searchsorted(rows, rows[stop]))
        if limit > lo:
            stretch = fast.apply(samples, lo, limit)
            commit(pipeline.state, samples, lo, limit)
            if stretch is not None:
                for listener in pipeline.stretch_listeners:
                    listener.on_stretch(stretch)
            lo = limit
            continue
        for frame in decoded.frame_at(int(rows[lo])):
            pipeline.feed_frame(frame)
        lo = int(np.searchsorted(rows, rows[lo], side="right"))
