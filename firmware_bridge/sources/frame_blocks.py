"""Logs as blocks of frames in numpy arrays, for replay: candump parsed without a Python object per line.

A year of driving is tens of millions of frames; python-can's readers build a ``can.Message`` per frame (about
5 µs each). Here a candump file is read in blocks of a few MB; lines of the usual ``candump -L`` shape are
checked and parsed column-wise (lines of one length and layout at a time), and every other line goes through
:func:`firmware_bridge.sources.candump.parse_line`, so odd-but-valid lines (CAN FD, no interface column) still
count and bad lines are reported with file and line. Formats without a block reader of their own are read as
python-can records and packed into the same blocks. Memory stays bounded by the block size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import can
import numpy as np

from firmware_bridge.records import FrameBlock, block_of_messages, join_blocks
from firmware_bridge.sources.candump import CAN_ERR_BUSERROR, CAN_ERR_FLAG, ID_MASK, LineError, parse_line
from firmware_bridge.sources.logs import (
    MAX_DATA_BYTES, MAX_LINE_BYTES, LogProblems, file_messages, in_time_order, log_format, open_log, python_can_warnings,
    LATEST_FRAME_T, report_unreadable, time_out_of_range)

BLOCK_BYTES = 2**20  # about 22k lines: RSS stays low and flat (benchmarks/bench_memory.py), numpy calls stay big
BLOCK_FRAMES = 22528  # for formats python-can reads, and BLF: about as many frames as BLOCK_BYTES of candump
#: Largest integer a double holds exactly: timestamps with more digits take the python-can path.
_EXACT_INT = 2**53

NEWLINE = b"\n"
_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
    _HEX[ord(chr(_c).upper())] = _i
#: "(1712345678.123456) can0 7E8#04410C1F40555555" with an optional " R"/" T": the shape candump -L writes.
_USUAL = re.compile(rb"\((\d+)\.(\d+)\) (\S+) ([0-9A-Fa-f]{1,8})#((?:[0-9A-Fa-f]{2}){0,%d})( [RrTt])?"
                    % MAX_DATA_BYTES)


def _concat(parts: list[tuple[np.ndarray, FrameBlock]]) -> FrameBlock:
    """Blocks of interleaved lines put back in line order (each part: the line index of each of its frames)."""
    order = np.argsort(np.concatenate([lines for lines, _ in parts]), kind="stable")
    return join_blocks([block for _, block in parts]).select(order)


class _Lines:
    """A list of candump lines as the file python-can's reader wants (it closes its file when done)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines)

    def close(self) -> None:
        pass


def _usual_lines(buf: np.ndarray, starts: np.ndarray, length: int, template: re.Match):
    """Check and parse lines sharing the template's length and layout; returns (ok mask, FrameBlock of ok)."""
    # One row per line, then columns made contiguous: every check and conversion below is a column operation.
    cols = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(buf, length)[starts].T)
    int_digits, frac_digits = template.end(1) - template.start(1), template.end(2) - template.start(2)
    ch0, ch1 = template.span(3)
    id0, id1 = template.span(4)
    d0, d1 = template.span(5)
    fixed = {0: 40, template.end(1): 46, template.end(2): 41, ch0 - 1: 32, ch1: 32, id1: 35}  # ( . ) sp sp #
    if template.group(6):
        fixed[template.start(6)] = 32
    digits = np.concatenate([np.arange(1, 1 + int_digits), np.arange(template.start(2), template.end(2))])
    ok = np.ones(len(starts), dtype=bool)
    for col, char in fixed.items():
        ok &= cols[col] == char
    digit_values = cols[digits] - np.uint8(48)
    ok &= (digit_values < 10).all(axis=0)
    ok &= ((cols[ch0:ch1] > 32) & (cols[ch0:ch1] < 127)).all(axis=0)
    nibbles = _HEX[cols[id0:d1]]
    nibbles[id1 - id0] = 0  # the '#'
    ok &= (nibbles < 16).all(axis=0)
    if template.group(6):
        ok &= np.isin(cols[length - 1], np.frombuffer(b"RrTt", dtype=np.uint8))
    if not ok.all():
        digit_values, nibbles = digit_values[:, ok], nibbles[:, ok]
    scaled = np.zeros(digit_values.shape[1], dtype=np.int64)
    for row in digit_values:
        scaled *= 10
        scaled += row
    exact = scaled < _EXACT_INT  # more digits than a double holds: python-can's path
    t = scaled / float(10 ** frac_digits)  # one correctly rounded division: float() of the text, exactly
    ids = np.zeros(len(scaled), dtype=np.uint64)
    for row in nibbles[:id1 - id0]:
        ids <<= np.uint64(4)
        ids |= row
    payload = nibbles[id1 - id0 + 1:]
    data = ((payload[0::2] << 4) | payload[1::2]).T
    error = ((ids & CAN_ERR_FLAG) != 0) & ((ids & CAN_ERR_BUSERROR) != 0)
    count = len(scaled)
    block = FrameBlock(t, np.where(error, 0, ids & ID_MASK).astype(np.uint32),
                       np.full(count, id1 - id0 > 3) | error, np.zeros(count, dtype=bool), error,
                       np.where(error, 0, (d1 - d0) // 2).astype(np.int16), np.ascontiguousarray(data))
    if not exact.all():
        ok[np.flatnonzero(ok)[~exact]] = False
        block = block.select(exact)
    return ok, block


def _parse_chunk(chunk: bytes, first_line: int, path: Path, problems: LogProblems) -> FrameBlock | None:
    if b"\r" in chunk:  # universal newlines, as text mode reads them (line numbers included)
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    buf = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    hashes = np.flatnonzero(buf == 35)
    hash_line = np.searchsorted(ends, hashes)
    per_line = np.bincount(hash_line, minlength=len(ends))
    first_hash = np.full(len(ends), -1)
    first_hash[hash_line[::-1]] = hashes[::-1] - starts[hash_line[::-1]]
    key = np.where(per_line == 1, lengths * 4096 + first_hash, -1)
    parts: list[tuple[np.ndarray, FrameBlock]] = []
    slow = np.zeros(len(ends), dtype=bool)
    for value in np.unique(key):
        rows = np.flatnonzero(key == value)
        template = _USUAL.fullmatch(chunk[starts[rows[0]]:ends[rows[0]]]) if value >= 0 else None
        if template is None or len(template.group(1)) + len(template.group(2)) > 18:  # beyond int64 digits
            slow[rows] = True
            continue
        ok, block = _usual_lines(buf, starts[rows], int(lengths[rows[0]]), template)
        slow[rows[~ok]] = True
        if len(block):
            parts.append((rows[ok], block))
    parts += _other_lines(chunk, starts, ends, np.flatnonzero(slow), first_line, path, problems)
    return _concat(parts) if parts else None


def _other_lines(chunk: bytes, starts, ends, rows, first_line: int, path: Path, problems: LogProblems):
    """Lines of another shape (CAN FD, no interface column, odd spacing): parsed one by one, in line order;
    each bad line counted with its number."""
    good_rows, good = [], []
    for row in rows.tolist():
        if ends[row] - starts[row] > MAX_LINE_BYTES:
            problems.add(f"{path}:{first_line + row}",
                         f"line of {ends[row] - starts[row]} bytes skipped (longer than {MAX_LINE_BYTES})")
            continue
        text = chunk[starts[row]:ends[row]].decode("ascii", errors="replace").strip()
        if not text:
            continue
        try:
            good.append(parse_line(text))
        except (LineError, ValueError) as exc:
            problems.add(f"{path}:{first_line + row}", str(exc))
            continue
        good_rows.append(row)
    return [(np.array(good_rows), block_of_messages(good))] if good else []


def _read_chunk(f, size: int) -> tuple[bytes, Exception | None]:
    """About ``size`` bytes, taken in the 8 KB steps a text-mode reader takes, and the error that stopped it:
    a truncated .gz keeps every complete line before the damage, as the line-by-line reader did."""
    pieces, total = [], 0
    try:
        while total < size:
            piece = f.read1(8192)
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
    except (OSError, EOFError) as exc:
        return b"".join(pieces), exc
    return b"".join(pieces), None


def candump_blocks(path: Path, problems: LogProblems) -> Iterator[FrameBlock]:
    """A candump log in blocks of about :data:`BLOCK_BYTES`; a line longer than :data:`MAX_LINE_BYTES` is
    counted and dropped as it streams past, never gathered whole."""
    line, count, rest, skipping = 1, 0, b"", False
    try:
        with open_log(path) as f:
            while True:
                chunk, failure = _read_chunk(f, BLOCK_BYTES)
                at_end = not chunk and failure is None
                if skipping:  # the rest of an over-long line
                    end = chunk.find(b"\n")
                    if end < 0:
                        chunk = b""
                    else:
                        chunk, skipping, line = chunk[end + 1:], False, line + 1
                data = rest + chunk
                if at_end and data and not data.endswith(b"\n"):
                    data += b"\n"  # the last line, without its newline
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
                if len(rest) > MAX_LINE_BYTES:
                    problems.add(f"{path}:{line + data.count(NEWLINE)}",
                                 f"line of more than {MAX_LINE_BYTES} bytes skipped")
                    rest, skipping = b"", True
                if data:
                    block = _parse_chunk(data, line, path, problems)
                    line += data.count(b"\n")
                    if b"\r" in data:  # lone CRs end lines too
                        line += data.count(b"\r") - data.count(b"\r\n")
                    if block is not None:
                        count += len(block)
                        yield block
                if failure is not None:
                    raise failure
                if at_end:
                    return
    except Exception as exc:  # noqa: BLE001 - reported as read_logs reports it
        report_unreadable(problems, path, count, exc)


def message_blocks(path: Path, problems: LogProblems) -> Iterator[FrameBlock]:
    """A format read as python-can records, packed into blocks of :data:`BLOCK_FRAMES`."""
    batch: list[can.Message] = []
    for msg in file_messages(path, problems):
        if msg.data is not None and len(msg.data) > MAX_DATA_BYTES:
            problems.add(str(path), f"frame of {len(msg.data)} data bytes (a CAN frame has at most {MAX_DATA_BYTES})")
            continue
        batch.append(msg)
        if len(batch) == BLOCK_FRAMES:
            yield block_of_messages(batch)
            batch = []
    if batch:
        yield block_of_messages(batch)


def read_blocks(paths: Iterable[str | Path], problems: LogProblems) -> Iterator[FrameBlock]:
    """Every frame of every log as blocks, logs in time order; unreadable parts counted in ``problems``."""
    for path in in_time_order(paths):
        fmt = log_format(path)
        if fmt.blocks is None:
            yield from _checked(path, message_blocks(path, problems), problems)
            continue
        with python_can_warnings(problems, path):  # (message_blocks catches them itself)
            yield from _checked(path, fmt.reader("blocks")(path, problems), problems)


def _checked(path: Path, blocks: Iterable[FrameBlock], problems: LogProblems) -> Iterator[FrameBlock]:
    """Frames whose time cannot be stored left out and reported, and times going backwards reported (frame
    numbers counted from 1 in the file), as :class:`TimeCheck` does frame by frame."""
    count, last_t = 0, None
    for block in blocks:
        bad = ~((block.t >= 0.0) & (block.t <= LATEST_FRAME_T))
        numbers = np.arange(count + 1, count + 1 + len(block))
        for row in np.flatnonzero(bad).tolist():
            problems.add(str(path), time_out_of_range(count + row + 1, float(block.t[row])))
        count += len(block)
        if bad.any():
            block, numbers = block.select(~bad), numbers[~bad]
        if not len(block):
            continue
        before = np.concatenate(([block.t[0] if last_t is None else last_t], block.t[:-1]))
        for row in np.flatnonzero(block.t < before).tolist():
            problems.time_back(path, int(numbers[row]), float(before[row]), float(block.t[row]))
        last_t = float(block.t[-1])
        yield block
