"""Progress bars (tqdm) for long log replays and simulated drives, shown only when stderr is a terminal."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Bytes sampled from the head of a text log to estimate its bytes per line (its frame count, for the ETA).
_SAMPLE_BYTES = 256 * 1024
_TEXT_FORMATS = (".log", ".asc", ".trc", ".csv")


def wanted(stream=None) -> bool:
    return (stream or sys.stderr).isatty()


def estimated_frames(path: Path) -> int | None:
    """Frames in a text log, from its size and the line length of its head; None where that cannot be known
    without reading it all (compressed or binary logs)."""
    if path.suffix.lower() not in _TEXT_FORMATS:
        return None
    with path.open("rb") as f:
        head = f.read(_SAMPLE_BYTES)
    lines = head.count(b"\n")
    return round(path.stat().st_size * lines / len(head)) if lines else None


def over_logs(blocks: Iterable, logs: Iterable[str | Path], what: str = "frames") -> Iterator:
    """Yields the blocks, with a bar of frames read (percentage and ETA when the logs' sizes tell the total)."""
    from tqdm import tqdm

    estimates = [estimated_frames(Path(p)) for p in logs]
    total = None if None in estimates else sum(estimates)
    with tqdm(total=total, unit=" " + what, unit_scale=True, file=sys.stderr, dynamic_ncols=True,
              leave=False) as bar:
        for block in blocks:
            if bar.total is not None and bar.n + len(block) > bar.total:
                bar.total = bar.n + len(block)  # the estimate was short: never past 100 %
            bar.update(len(block))
            yield block
        if bar.total is not None:
            bar.total = bar.n
            bar.refresh()


def over_drive(frames: Iterable, duration_s: float, start_t: float) -> Iterator:
    """Yields a simulated drive's frames, with a bar of car seconds written."""
    from tqdm import tqdm

    with tqdm(total=round(duration_s), unit=" s", file=sys.stderr, dynamic_ncols=True, leave=False,
              desc="simulating") as bar:
        for message in frames:
            done = min(round(message.timestamp - start_t), bar.total)
            if done > bar.n:
                bar.update(done - bar.n)
            yield message
