"""The small records that flow between pipeline stages.

sources yield ``can.Message`` (python-can's own type) -> decode yields :class:`DecodedFrame` ->
vehicle state yields :class:`Sample` -> analytics yield trip summaries and :class:`Point` for the sinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class DecodedFrame(NamedTuple):
    """One frame decoded by a DBC message: physical values by signal name."""

    t: float
    frame_id: int
    message: str
    signals: dict[str, float]


class Sample(NamedTuple):
    """One canonical quantity (``speed_kmh``, ``engine_rpm``...) at one moment, frame time in Unix seconds."""

    t: float
    quantity: str
    value: float


@dataclass
class Point:
    """One time-series point for the sinks (InfluxDB line protocol model), time in Unix seconds."""

    measurement: str
    t: float
    fields: dict[str, float | int | str | bool]
    tags: dict[str, str] = field(default_factory=dict)
