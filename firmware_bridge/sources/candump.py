"""candump logs (``candump -L``), checked and parsed line by line: the one place that says what a candump line is.

``(1712345678.123456) can0 7E8#04410C1F40555555`` with an optional `` R``/`` T``; remote ``123#R`` (``#R8``);
CAN FD ``123##<flags nibble><data>`` (candump writes the flags as one hex digit); and lines without the
interface column, as some loggers write them. python-can's own reader reads the flags nibble as a decimal digit
and needs the interface column, so a line of either kind would end its iteration; here each line stands alone.
The fast block reader (:mod:`firmware_bridge.sources.frame_blocks`) parses the usual shape with numpy and hands
every other line to :func:`parse_line`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import can

from firmware_bridge.sources.logs import MAX_DATA_BYTES, LogProblems, TextLines

CAN_ERR_FLAG, CAN_ERR_BUSERROR, ID_MASK = 0x20000000, 0x00000080, 0x1FFFFFFF
CANFD_BRS, CANFD_ESI = 0x01, 0x02

LINE = re.compile(r"\((?P<t>\d+(?:\.\d+)?)\)\s+(?:(?P<channel>\S+)\s+)?(?P<id>[0-9A-Fa-f]{1,8})#"
                  r"(?:#(?P<flags>[0-9A-Fa-f]))?(?:(?P<data>(?:[0-9A-Fa-f]{2})*)|[Rr](?P<dlc>\d*))"
                  r"(?:\s+(?P<dir>[RrTt]))?")


class LineError(ValueError):
    """A line that is not a candump frame; the text says why."""


def parse_line(text: str) -> can.Message:
    """One candump line as python-can's record (the fields python-can's reader would give it)."""
    match = LINE.fullmatch(text)
    if match is None:
        raise LineError(f"not a candump line: {text[:60]!r}")
    data_hex, flags = match["data"], match["flags"]
    if data_hex is not None and len(data_hex) > 2 * MAX_DATA_BYTES:
        raise LineError(f"{len(data_hex) // 2} data bytes (a CAN frame has at most {MAX_DATA_BYTES})")
    can_id = int(match["id"], 16)
    timestamp = float(match["t"])
    if can_id & CAN_ERR_FLAG and can_id & CAN_ERR_BUSERROR:
        return can.Message(timestamp=timestamp, is_error_frame=True)
    channel = match["channel"]
    fd_flags = int(flags, 16) if flags is not None else 0
    remote = data_hex is None
    return can.Message(
        timestamp=timestamp, arbitration_id=can_id & ID_MASK, is_extended_id=len(match["id"]) > 3,
        is_remote_frame=remote, is_fd=flags is not None, is_rx=(match["dir"] or "R") in "Rr",
        bitrate_switch=bool(fd_flags & CANFD_BRS), error_state_indicator=bool(fd_flags & CANFD_ESI),
        channel=(int(channel) if channel.isdigit() else channel) if channel else None,
        dlc=int(match["dlc"] or 0) if remote else len(data_hex) // 2,
        data=None if remote else bytes.fromhex(data_hex))


def messages(path: Path, problems: LogProblems) -> Iterator[can.Message]:
    """Every frame of a candump log; each bad line counted with its number and skipped."""
    lines = TextLines(path, problems)
    for text in lines:
        text = text.strip()
        if not text:
            continue
        try:
            yield parse_line(text)
        except (LineError, ValueError) as exc:
            problems.add(f"{path}:{lines.number}", str(exc))


def blocks(path: Path, problems: LogProblems):
    from firmware_bridge.sources.frame_blocks import candump_blocks

    return candump_blocks(path, problems)
