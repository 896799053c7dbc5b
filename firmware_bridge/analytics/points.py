"""Analytics results as time-series points (DESIGN §4): per-interval ``vehicle`` points and trip points.

Timestamps come from the frames: a ``vehicle`` point is stamped with the start of its interval and a trip's
points with the trip's start, so writing the same drive twice overwrites instead of duplicating.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from firmware_bridge.analytics.settings import SPEED_BANDS, SPEED_DOMAINS
from firmware_bridge.analytics.tracker import TripTracker
from firmware_bridge.analytics.trip import Trip
from firmware_bridge.records import Point, Sample

#: Quantities written on the vehicle measurement (numbers only; fields stay floats).
VEHICLE_FIELDS = ("speed_kmh", "engine_rpm", "throttle_pct", "map_kpa", "maf_gps", "iat_c", "coolant_c",
                  "fuel_level_pct", "odometer_km", "battery_v", "battery_a", "soc_pct", "engine_load_pct",
                  "lambda", "oil_c", "ambient_c", "baro_kpa")


class VehiclePoints:
    """Listener on the pipeline's samples: one ``vehicle`` point per interval with the latest values."""

    def __init__(self, tracker: TripTracker, emit: Callable[[Point], None], vehicle_id: str,
                 interval_s: float = 1.0) -> None:
        self.tracker, self.emit, self.vehicle_id, self.interval_s = tracker, emit, vehicle_id, interval_s
        self._bucket: float | None = None
        self._fields: dict[str, float] = {}

    def __call__(self, sample: Sample, values: dict[str, float]) -> None:
        bucket = math.floor(sample.t / self.interval_s) * self.interval_s
        if self._bucket is not None and bucket != self._bucket:
            self.flush()
        self._bucket = bucket
        if sample.quantity in VEHICLE_FIELDS:
            self._fields[sample.quantity] = float(sample.value)

    def flush(self) -> None:
        if self._bucket is None or not self._fields:
            return
        fields: dict[str, float | str] = dict(self._fields)
        best = self.tracker.fuel_rate_lph()
        if best is not None:
            source, rate_lph = best
            fields["fuel_rate_lph"] = float(rate_lph)
            fields["fuel_source"] = source
            speed = fields.get("speed_kmh")
            if speed is not None and rate_lph > 0:
                fields["economy_km_per_l"] = float(speed) / rate_lph
        self.emit(Point("vehicle", self._bucket, fields, {"vehicle": self.vehicle_id}))
        self._fields = {}


def trip_points(trip: Trip, vehicle_id: str, trip_id: str) -> list[Point]:
    """The trip, speed_band and speed_domain points of one trip, all stamped with the trip's start."""
    summary = trip.summary()
    tags = {"vehicle": vehicle_id}
    fields = {key: value for key, value in summary.items()
              if isinstance(value, (int, float)) and not isinstance(value, bool)}
    fields["trip_id"] = trip_id
    if summary["fuel_source"]:
        fields["fuel_source"] = summary["fuel_source"]
    points = [Point("trip", trip.start, fields, tags)]
    for _, band in SPEED_BANDS:
        values = {k: v for k, v in summary["speed_bands"][band].items() if v is not None}
        points.append(Point("speed_band", trip.start, {**values, "trip_id": trip_id}, {**tags, "band": band}))
    for domain in SPEED_DOMAINS:
        values = {k: v for k, v in summary["speed_domains"][domain].items() if v is not None}
        points.append(Point("speed_domain", trip.start, {**values, "trip_id": trip_id}, {**tags, "domain": domain}))
    return points
