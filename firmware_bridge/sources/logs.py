"""Recorded CAN logs: one registry of formats, each a small reader found by extension (and, for CSV, by header).

| suffix | format | reader |
|---|---|---|
| ``.log`` | candump -L (with or without the interface column, CAN FD) | :mod:`~firmware_bridge.sources.candump` |
| ``.asc`` | Vector ASC | python-can's ``ASCReader`` |
| ``.blf`` | Vector BLF | :mod:`~firmware_bridge.sources.blf_blocks` (python-can's ``BLFReader`` layout) |
| ``.trc`` | PCAN-View TRC 1.0, 1.1, 1.3, 2.0, 2.1 | python-can's ``TRCReader`` |
| ``.csv`` | SavvyCAN/GVRET CSV (``Time Stamp,ID,Extended,...`` header) | :mod:`~firmware_bridge.sources.gvret` |
| ``.csv`` | python-can's CSV (any other header) | python-can's ``CSVReader`` |
| ``.mf4`` | ASAM MDF 4 (CANedge), with the ``mf4`` extra (asammdf) | python-can's ``MF4Reader`` |
| ``.nmea`` | NMEA 0183 GPS sentences (not CAN: read beside the CAN logs) | :mod:`~firmware_bridge.sources.gps` |

Each may be gzip-compressed (``.gz``). A bad line never ends a log: it is counted with its file and line number
and skipped (text formats); a damaged binary file keeps the frames before the damage and is reported once.
Memory stays bounded whatever the input: a text line longer than :data:`MAX_LINE_BYTES` is skipped without
being read whole, and a frame of more than :data:`MAX_DATA_BYTES` bytes is counted as malformed.
Several logs are read in time order (by their first frame), whatever order they are given in.
"""

from __future__ import annotations

import gzip
import importlib
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import can

from firmware_bridge.errors import InputError

#: The latest frame time the agent can store: InfluxDB keeps int64 nanoseconds (to 2262-04-11). A frame stamped
#: outside 1970..then is a corrupt record, left out and reported like an unreadable line.
LATEST_FRAME_T = (2**63 - 1) / 1e9
#: Longest text line read: a CAN FD candump or ASC line is a few hundred bytes.
MAX_LINE_BYTES = 4096
#: Largest CAN frame payload (CAN FD).
MAX_DATA_BYTES = 64


@dataclass(frozen=True)
class LogFormat:
    """One log format: its suffix, and the functions (``"module:name"``, imported when used) that read it."""

    name: str
    suffix: str
    messages: str  # (path, problems) -> Iterator[can.Message]
    blocks: str | None = None  # (path, problems) -> Iterator[FrameBlock]; None: messages packed into blocks
    header: re.Pattern | None = None  # formats sharing a suffix: the first line that says it is this one

    def reader(self, which: str = "messages") -> Callable:
        module, name = getattr(self, which).split(":")
        return getattr(importlib.import_module(module), name)


_SOURCES = "firmware_bridge.sources"
FORMATS = (
    LogFormat("candump", ".log", f"{_SOURCES}.candump:messages", f"{_SOURCES}.candump:blocks"),
    LogFormat("Vector ASC", ".asc", f"{_SOURCES}.logs:asc_messages"),
    LogFormat("Vector BLF", ".blf", f"{_SOURCES}.blf_blocks:blf_messages", f"{_SOURCES}.blf_blocks:blf_blocks"),
    LogFormat("PCAN TRC", ".trc", f"{_SOURCES}.logs:trc_messages"),
    LogFormat("SavvyCAN GVRET CSV", ".csv", f"{_SOURCES}.gvret:messages",
              header=re.compile(r"\s*time ?stamp\s*,\s*id\s*,\s*extended\s*,", re.IGNORECASE)),
    LogFormat("python-can CSV", ".csv", f"{_SOURCES}.logs:csv_messages"),
    LogFormat("ASAM MDF4", ".mf4", f"{_SOURCES}.logs:mf4_messages"),
)
#: GPS fixes, not CAN frames: checked here like every log, read by sources/gps.py beside the CAN logs.
NMEA = LogFormat("NMEA 0183 GPS", ".nmea", f"{_SOURCES}.gps:read_nmea")
LOG_SUFFIXES = (*dict.fromkeys(f.suffix for f in FORMATS), NMEA.suffix)


@dataclass
class LogProblems:
    """Unreadable lines and records, counted (they become ``frames.malformed``) and kept for the report;
    times going backwards inside a file are counted apart (their frames are still read)."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5
    time_steps_back: int = 0
    time_examples: list[str] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{where}: {what}")

    def time_back(self, path: Path, frame_number: int, before: float, after: float) -> None:
        self.time_steps_back += 1
        if len(self.time_examples) < self.max_examples:
            self.time_examples.append(f"{path}: frame {frame_number}: time goes back {before - after:.6f} s "
                                      f"(from {before!r} to {after!r})")


def open_log(path: Path):
    """The log's bytes, gzip-decompressed for a ``.gz`` file."""
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def log_format(path: Path) -> LogFormat:
    """The format of a log: by extension, and by its first line where formats share one."""
    suffix = _suffix(path)
    if suffix == NMEA.suffix:
        return NMEA
    candidates = [f for f in FORMATS if f.suffix == suffix]
    if not candidates:
        raise InputError(f"{path}: unknown log format {suffix or '(no extension)'!r}; "
                         f"expected one of {', '.join(LOG_SUFFIXES)} (optionally .gz)")
    if len(candidates) > 1 and path.is_file():
        first = first_line(path)
        for fmt in candidates:
            if fmt.header is not None and fmt.header.match(first):
                return fmt
    return next(f for f in candidates if f.header is None)


def first_line(path: Path) -> str:
    try:
        with open_log(path) as f:
            return f.readline(MAX_LINE_BYTES).decode("ascii", errors="replace")
    except (OSError, EOFError):
        return ""


def check_logs(paths: Iterable[str | Path]) -> list[Path]:
    """Fail early, before any output, on a missing file or an unknown format."""
    checked = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputError(f"{path}: no such log file")
        log_format(path)
        try:
            path.open("rb").close()
        except OSError as exc:
            raise InputError(f"{path}: cannot read the log: {exc.strerror}") from None
        checked.append(path)
    return checked


class TextLines:
    """A text log's lines (decoded, gzip or not) for a line reader; ``number`` is the last line's number. A line
    longer than :data:`MAX_LINE_BYTES` is counted and skipped in pieces, never held whole."""

    def __init__(self, path: Path, problems: LogProblems) -> None:
        self.path, self.problems, self.number = path, problems, 0

    def __iter__(self) -> Iterator[str]:
        with open_log(self.path) as f:
            while line := f.readline(MAX_LINE_BYTES + 1):
                self.number += 1
                if len(line) > MAX_LINE_BYTES:
                    size = len(line)
                    while not line.endswith(b"\n") and (line := f.readline(1 << 16)):
                        size += len(line)
                    self.problems.add(f"{self.path}:{self.number}",
                                      f"line of {size} bytes skipped (longer than {MAX_LINE_BYTES})")
                    continue
                yield line.decode("ascii", errors="replace")


class _LineFile:
    """Lines as the text file python-can's readers iterate (and close when done)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self.lines)

    def close(self) -> None:
        """The lines' file closes with their iteration."""


def python_can_text(path: Path, problems: LogProblems, reader: Callable[[_LineFile], Iterable[can.Message]]):
    """A python-can text reader that goes on after a line it cannot parse: the line is counted with its number,
    and a fresh reader is given the file's header again (TRC columns, ASC base and start time) and the lines
    after it. A file unreadable before its first frame raises (reported by :func:`read_logs`)."""
    lines = TextLines(path, problems)
    rest = iter(lines)
    header: list[str] = []
    started = False

    def session() -> Iterator[str]:
        yield from list(header)
        for line in rest:
            if not started:
                header.append(line)
            yield line

    while True:
        try:
            for msg in reader(_LineFile(session())):
                if not started:
                    started = True
                    header.pop()  # the first frame's own line
                yield msg
            return
        except Exception as exc:  # noqa: BLE001 - python-can's readers raise assorted types on a bad line
            if not started:
                raise
            problems.add(f"{path}:{lines.number}", f"unreadable line: {_reason(exc)}")


def asc_messages(path: Path, problems: LogProblems) -> Iterator[can.Message]:
    return python_can_text(path, problems, lambda f: can.ASCReader(f, relative_timestamp=False))


def trc_messages(path: Path, problems: LogProblems) -> Iterator[can.Message]:
    return python_can_text(path, problems, can.TRCReader)


def csv_messages(path: Path, problems: LogProblems) -> Iterator[can.Message]:
    return python_can_text(path, problems, can.CSVReader)


def mf4_messages(path: Path, problems: LogProblems) -> Iterator[can.Message]:
    try:
        import asammdf  # noqa: F401 - python-can reads MF4 through it
    except ImportError:
        raise InputError(f"{path}: MF4 logs need asammdf: pip install 'firmware-bridge[mf4]'") from None
    with open_log(path) as f:
        yield from can.MF4Reader(f)


def file_messages(path: Path, problems: LogProblems) -> Iterator[can.Message]:
    """One log's frames; a file that stops being readable is reported once, after the frames before it."""
    count = 0
    try:
        with python_can_warnings(problems, path):
            for msg in log_format(path).reader()(path, problems):
                count += 1
                yield msg
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-can's readers raise assorted types on corrupt files
        report_unreadable(problems, path, count, exc)


class _Problems(logging.Handler):
    def __init__(self, problems: LogProblems, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.problems, self.path = problems, path

    def emit(self, record: logging.LogRecord) -> None:
        self.problems.add(str(self.path), record.getMessage())


@contextmanager
def python_can_warnings(problems: LogProblems, path: Path):
    """python-can's readers log (or warn about) what they skip, e.g. an empty .trc: counted as our problems
    with the file's name, instead of leaking as their own warnings."""
    logger = logging.getLogger("can")
    handler, propagate = _Problems(problems, path), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for warning in caught:
                    problems.add(str(path), str(warning.message))
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def first_time(path: Path) -> float:
    """The time of a log's first storable frame (inf when it has none), to put several logs in order."""
    for msg in file_messages(path, LogProblems()):
        if 0.0 <= msg.timestamp <= LATEST_FRAME_T:
            return msg.timestamp
    return float("inf")


def in_time_order(paths: Iterable[str | Path]) -> list[Path]:
    """The logs ordered by their first frame's time (given order for ties): a user's ``day2.log day1.log``
    is read as the car drove it."""
    checked = check_logs(paths)
    if len(checked) < 2:
        return checked
    return sorted(checked, key=first_time)


class TimeCheck:
    """Per file: frames whose time cannot be stored, and times going backwards, reported with the frame number."""

    def __init__(self, path: Path, problems: LogProblems) -> None:
        self.path, self.problems = path, problems
        self.frames, self.last_t = 0, None

    def message_ok(self, msg: can.Message) -> bool:
        self.frames += 1
        if not 0.0 <= msg.timestamp <= LATEST_FRAME_T:
            self.problems.add(str(self.path), time_out_of_range(self.frames, msg.timestamp))
            return False
        if msg.data is not None and len(msg.data) > MAX_DATA_BYTES:
            self.problems.add(str(self.path), f"frame {self.frames}: {len(msg.data)} data bytes "
                                              f"(a CAN frame has at most {MAX_DATA_BYTES})")
            return False
        if self.last_t is not None and msg.timestamp < self.last_t:
            self.problems.time_back(self.path, self.frames, self.last_t, msg.timestamp)
        self.last_t = msg.timestamp
        return True


def read_logs(paths: Iterable[str | Path], problems: LogProblems) -> Iterator[can.Message]:
    """Every frame of every log, logs in time order; unreadable parts are counted in ``problems``."""
    for path in in_time_order(paths):
        check = TimeCheck(path, problems)
        for msg in file_messages(path, problems):
            if check.message_ok(msg):
                yield msg


def time_out_of_range(frame_number: int, t: float) -> str:
    return f"frame {frame_number}: time {t!r} s is outside 1970-2262"


def _reason(exc: Exception) -> str:
    known = isinstance(exc, (ValueError, IndexError, KeyError, OSError, EOFError, can.CanError))
    return str(exc) if known else f"{type(exc).__name__}: {exc}"


def report_unreadable(problems: LogProblems, path: Path, frames_before: int, exc: Exception) -> None:
    """A log that stops being readable: counted once, with what was read before (the frames are kept)."""
    problems.add(f"{path}", f"unreadable after {frames_before} frames: {_reason(exc)}")


def report_problems(problems: LogProblems, stream=None) -> None:
    stream = stream or sys.stderr
    for example in problems.examples:
        print(f"warning: {example}", file=stream)
    if problems.count > len(problems.examples):
        print(f"warning: {problems.count - len(problems.examples)} more unreadable lines", file=stream)
    for example in problems.time_examples:
        print(f"warning: {example}", file=stream)
    if problems.time_steps_back > len(problems.time_examples):
        print(f"warning: time goes back {problems.time_steps_back - len(problems.time_examples)} more times",
              file=stream)
