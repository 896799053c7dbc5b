"""InfluxDB line protocol: the format every InfluxDB version ingests, and our file sink.

Escaping follows the line-protocol reference: measurement escapes commas and spaces; tag keys, tag values
and field keys escape commas, equals signs and spaces; string field values escape double quotes and
backslashes. Floats are always written as floats so a field never changes type. NaN and infinities have no
line-protocol form (InfluxDB refuses the whole line): such a field is left out, and counted by the sinks.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

from firmware_bridge.records import Point


@lru_cache(maxsize=4096)  # keys come from a small fixed set: escape each once
def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


@lru_cache(maxsize=1024)
def _series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """Measurement and sorted tags: one per series, reused for each of its points."""
    escaped = measurement.replace(",", "\\,").replace(" ", "\\ ")
    return escaped + "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags) if v != "")


def _field_value(value: float | int | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(float(value))
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@lru_cache(maxsize=4096)
def _field_key(key: str) -> str:
    return _escape_key(key) + "="


def non_finite_fields(point: Point) -> int:
    """How many of the point's fields are NaN or infinite (x - x is 0.0 for every finite float only)."""
    return sum(1 for v in point.fields.values() if type(v) is float and v - v != 0.0)


def to_line(point: Point) -> str | None:
    """One point as a line, timestamp in milliseconds (the schema's precision); None if no field is finite."""
    fields = ",".join([_field_key(k) + (repr(v) if type(v) is float else _field_value(v))
                       for k, v in point.fields.items() if type(v) is not float or v - v == 0.0])
    if not fields:
        return None
    return f"{_series_key(point.measurement, tuple(point.tags.items()))} {fields} {round(point.t * 1000)}"


#: The file is flushed by the first point written this long after the last flush: a live run, which makes
#: points every second, is on disk within about two seconds (for `tail -f`, or after a crash).
FLUSH_S = 1.0


class LineProtocolFile:
    """Appends points to a text file, one line each (import with ``influx write`` or the HTTP API)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")
        self._flushed_at = time.monotonic()
        self.points_written = 0
        self.non_finite_fields = 0

    def write(self, point: Point) -> None:
        self.non_finite_fields += non_finite_fields(point)
        line = to_line(point)
        if line is not None:
            self._file.write(line + "\n")
            self.points_written += 1
            now = time.monotonic()
            if now - self._flushed_at >= FLUSH_S:
                self._file.flush()
                self._flushed_at = now

    def close(self) -> None:
        self._file.close()
