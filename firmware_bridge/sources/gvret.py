"""SavvyCAN / GVRET CSV logs: ``Time Stamp,ID,Extended,Dir,Bus,LEN,D1,D2,...`` (the usual CSV of real-car logs).

Columns are found by name in the header, so files with or without ``Dir`` or ``Bus`` (older SavvyCAN, apps that
export "GVRET" CSV) read alike; ``Time Stamp`` is in microseconds (SavvyCAN's unit), ``ID`` hex, ``Extended``
``true``/``false``, then ``LEN`` data bytes in hex from ``D1`` on (CAN FD files have up to 64 columns), a trailing
comma allowed. A line that does not fit is counted with its number and skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import can

from firmware_bridge.sources.logs import MAX_DATA_BYTES, LogProblems, TextLines

MICROSECONDS_PER_S = 1_000_000
_TRUE = {"true", "1", "yes"}


class _Columns:
    def __init__(self, header: str) -> None:
        names = [n.strip().lower().replace(" ", "") for n in header.split(",")]
        try:
            self.t, self.id, self.extended = names.index("timestamp"), names.index("id"), names.index("extended")
            self.length, self.data = names.index("len"), names.index("d1")
        except ValueError as exc:
            raise ValueError(f"not a GVRET CSV header ({exc})") from None
        self.direction = names.index("dir") if "dir" in names else None
        self.bus = names.index("bus") if "bus" in names else None

    def message(self, line: str) -> can.Message:
        cols = [c.strip() for c in line.split(",")]
        length = int(cols[self.length])
        if not 0 <= length <= MAX_DATA_BYTES:
            raise ValueError(f"LEN {length} (a CAN frame has 0..{MAX_DATA_BYTES} data bytes)")
        data = cols[self.data:self.data + length]
        if len(data) < length or any(len(b) not in (1, 2) for b in data):
            raise ValueError(f"LEN {length} but data {','.join(data)!r}")
        direction = cols[self.direction].lower() if self.direction is not None else "rx"
        return can.Message(timestamp=_seconds(cols[self.t]), arbitration_id=int(cols[self.id], 16),
                           is_extended_id=cols[self.extended].lower() in _TRUE, is_rx=direction != "tx",
                           channel=_channel(cols[self.bus]) if self.bus is not None else None,
                           is_fd=length > 8, dlc=length, data=bytes(int(b, 16) for b in data))


def _channel(bus: str) -> int | str:
    return int(bus) if bus.isdigit() else bus


def _seconds(stamp: str) -> float:
    """Microseconds as seconds: whole ones divided once (exact as a double allows), fractional ones as well."""
    return (int(stamp) if stamp.isdigit() else float(stamp)) / MICROSECONDS_PER_S


def messages(path: Path, problems: LogProblems) -> Iterator[can.Message]:
    lines = TextLines(path, problems)
    columns = None
    for line in lines:
        if not line.strip():
            continue
        try:
            if columns is None:
                columns = _Columns(line)
                continue
            yield columns.message(line)
        except (ValueError, IndexError) as exc:
            problems.add(f"{path}:{lines.number}", f"not a GVRET CSV line ({exc}): {line.strip()[:60]!r}")
