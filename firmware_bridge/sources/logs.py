"""Recorded CAN logs through python-can's readers, format by extension (.log, .asc, .blf, .trc, .csv, + .gz).

A corrupt line never ends a replay: candump lines are checked before python-can parses them, and bad ones are
counted and reported with their file and line number. Other formats stop at the first unreadable record (the
frames before it are kept) and the problem is reported the same way.
"""

from __future__ import annotations

import gzip
import logging
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import can

from firmware_bridge.errors import InputError

LOG_SUFFIXES = (".log", ".asc", ".blf", ".trc", ".csv", ".nmea")  # .nmea: GPS, read by sources/gps.py

#: The latest frame time the agent can store: InfluxDB keeps int64 nanoseconds (to 2262-04-11). A frame stamped
#: outside 1970..then is a corrupt record, left out and reported like an unreadable line.
LATEST_FRAME_T = (2**63 - 1) / 1e9

# candump -L: "(1712345678.123456) can0 7E8#04410C1F40555555" [optional " R"/" T"], or remote "123#R".
_CANDUMP_LINE = re.compile(
    r"\(\d+(?:\.\d+)?\)\s+\S+\s+[0-9A-Fa-f]{1,8}#(?:#[0-9A-Fa-f])?(?:(?:[0-9A-Fa-f]{2})*|[Rr]\d*)(?:\s+[RrTt])?")


@dataclass
class LogProblems:
    """Unreadable lines and records, counted (they become ``frames.malformed``) and kept for the report."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    def add(self, where: str, what: str) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{where}: {what}")


def log_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in LOG_SUFFIXES:
        raise InputError(f"{path}: unknown log format {suffix or '(no extension)'!r}; "
                         f"expected one of {', '.join(LOG_SUFFIXES)} (optionally .gz)")
    return suffix


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


class _CheckedLines:
    """A text file's lines for python-can's candump reader, with corrupt lines counted and left out."""

    def __init__(self, path: Path, problems: LogProblems) -> None:
        self.path, self.problems = path, problems

    def __iter__(self) -> Iterator[str]:
        opener = gzip.open if self.path.suffix.lower() == ".gz" else open
        with opener(self.path, "rt", encoding="ascii", errors="replace") as f:
            for number, line in enumerate(f, 1):
                text = line.strip()
                if not text:
                    continue
                if _CANDUMP_LINE.fullmatch(text):
                    yield text
                else:
                    self.problems.add(f"{self.path}:{number}", f"not a candump line: {text[:60]!r}")

    def close(self) -> None:
        """python-can closes its file when done; the lines' file closes with the iteration."""


def _reader(path: Path, problems: LogProblems) -> Iterable[can.Message]:
    fmt = log_format(path)
    if fmt == ".log":
        return can.CanutilsLogReader(_CheckedLines(path, problems))
    if fmt == ".asc":  # absolute times; python-can's LogReader drops reader options for .gz files
        source = gzip.open(path, "rt") if path.suffix.lower() == ".gz" else path
        return can.ASCReader(source, relative_timestamp=False)
    return can.LogReader(path)


def read_logs(paths: Iterable[str | Path], problems: LogProblems) -> Iterator[can.Message]:
    """Every frame of every log, in file order; unreadable parts are counted in ``problems``."""
    for path in check_logs(paths):
        count = 0
        try:
            with python_can_warnings(problems, path):
                for msg in _reader(path, problems):
                    count += 1
                    if 0.0 <= msg.timestamp <= LATEST_FRAME_T:
                        yield msg
                    else:
                        problems.add(str(path), time_out_of_range(count, msg.timestamp))
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


def time_out_of_range(frame_number: int, t: float) -> str:
    return f"frame {frame_number}: time {t!r} s is outside 1970-2262"


def report_unreadable(problems: LogProblems, path: Path, frames_before: int, exc: Exception) -> None:
    """A log that stops being readable: counted once, with what was read before (the frames are kept)."""
    known = isinstance(exc, (ValueError, IndexError, KeyError, OSError, EOFError, can.CanError))
    problems.add(f"{path}", f"unreadable after {frames_before} frames: {exc if known else f'{type(exc).__name__}: {exc}'}")


def report_problems(problems: LogProblems, stream=None) -> None:
    if not problems.count:
        return
    stream = stream or sys.stderr
    for example in problems.examples:
        print(f"warning: {example}", file=stream)
    if problems.count > len(problems.examples):
        print(f"warning: {problems.count - len(problems.examples)} more unreadable lines", file=stream)
