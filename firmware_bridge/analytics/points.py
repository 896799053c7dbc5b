"""Analytics results as time-series points: vehicle, trip, speed_band, speed_domain, event, signal.

Timestamps come from the frames, never from the wall clock: a ``vehicle`` point is stamped with the start of
its interval and a trip's points with the trip's start, so re-sending or replaying the same drive overwrites
instead of duplicating. Fields keep one type for good (numbers are floats, ``trip_id`` and ``fuel_source``
strings) so the server never answers with a type conflict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np

from firmware_bridge.analytics.fuel import FUEL_SOURCES
from firmware_bridge.analytics.settings import SPEED_BANDS, SPEED_DOMAINS
from firmware_bridge.analytics.trip import Trip
from firmware_bridge.constants import KM_PER_L_TO_MPG_US
from firmware_bridge.records import DecodedFrame, Point, Segment

#: Quantities written on the vehicle measurement, in the order its fields are written.
VEHICLE_FIELD_ORDER = ("speed_kmh", "engine_rpm", "throttle_pct", "map_kpa", "maf_gps", "iat_c", "coolant_c",
                            "fuel_level_pct", "odometer_km", "battery_v", "battery_a", "soc_pct",
                            "engine_load_pct", "lambda", "oil_c", "ambient_c", "baro_kpa", "motor_rpm",
                            "motor_temp_c", "range_km", "accel_pedal_pct", "cell_v_max", "cell_v_min",
                            "lat", "lon", "alt_m", "gps_speed_kmh", "heading_deg", "fix", "hdop", "satellites")
VEHICLE_FIELDS = frozenset(VEHICLE_FIELD_ORDER)


def economy_fields(km_per_l: float | None) -> dict[str, float]:
    """The same economy in the three units the dashboards' unit variable picks from."""
    if not km_per_l:
        return {}
    return {"economy_km_per_l": km_per_l, "economy_l_per_100km": 100.0 / km_per_l,
            "economy_mpg_us": km_per_l * KM_PER_L_TO_MPG_US}


def trip_id(trip: Trip) -> str:
    """Stable per trip (its start time), so a trip rewritten as it goes on stays one trip."""
    return datetime.fromtimestamp(trip.start, timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"


def _numbers(values: dict) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def trip_points(trip: Trip, vehicle_id: str) -> list[Point]:
    """The trip, speed_band and speed_domain points of one trip, all stamped with the trip's start."""
    summary = trip.summary()
    tags = {"vehicle": vehicle_id}
    tid = trip_id(trip)
    fields: dict[str, float | str] = _numbers(summary)
    fields["trip_id"] = tid
    fields["end_ms"] = trip.end * 1000.0  # the trip's end as a time (dashboards link to the trip's time range)
    if summary["fuel_source"]:
        fields["fuel_source"] = summary["fuel_source"]
    points = [Point("trip", trip.start, fields, tags)]
    for _, band in SPEED_BANDS:
        values = {**_numbers(summary["speed_bands"][band]), "trip_id": tid}
        points.append(Point("speed_band", trip.start, values, {**tags, "band": band}))
    for domain in SPEED_DOMAINS:
        values = _numbers(summary["speed_domains"][domain])
        values.update(economy_fields(values.get("economy_km_per_l")), trip_id=tid)
        points.append(Point("speed_domain", trip.start, values, {**tags, "domain": domain}))
    return points


class PointEmitter:
    """Subscribes to a pipeline and hands every point to ``emit``.

    - ``vehicle``: one point per ``interval_s`` with the latest value of each quantity (held for up to
      ``hold_s`` when a polled quantity skips an interval), the best fuel-rate estimate, its source and the
      instantaneous km/L;
    - ``trip`` / ``speed_band`` / ``speed_domain``: every ``trip_update_s`` while a trip runs and when it ends;
    - ``event``: harsh acceleration and braking, gaps in the data;
    - ``signal``: every decoded frame's raw signals, when enabled (heavy: one point per frame).
    """

    def __init__(self, pipeline, emit: Callable[[Point], None], vehicle_id: str, interval_s: float = 1.0,
                 trip_update_s: float = 60.0, raw_signals: bool = False, hold_s: float = 5.0) -> None:
        self.pipeline, self.emit, self.vehicle_id = pipeline, emit, vehicle_id
        self.interval_s, self.trip_update_s = interval_s, trip_update_s
        self._index: int | None = None  # the interval being filled: its start is index * interval_s
        # quantity -> (time, value): a polled quantity may skip an interval; its last value stands in for it
        # until it is older than hold_s, so dashboards get one complete point per interval.
        self._latest: dict[str, tuple[float, float]] = {}
        self._order: list[str] = []  # the quantities in _latest, in field order
        self.hold_s = hold_s
        self._next_trip_update: float | None = None
        pipeline.segment_listeners.append(self.on_segment)
        pipeline.due_listeners.append(self.due_t)
        pipeline.trip_listeners.append(self.on_trip)
        pipeline.tracker.on_event = self.on_event
        if raw_signals:
            pipeline.frame_listeners.append(self.on_frame)

    def due_t(self) -> float | None:
        """While a trip runs, its figures are rewritten at the first sample ``trip_update_s`` after the last
        rewrite (the trip's first sample starts the count): the tracker ends a segment there."""
        if self.pipeline.tracker.trip is None:
            return None
        return -math.inf if self._next_trip_update is None else self._next_trip_update

    def on_segment(self, segment: Segment) -> None:
        """The vehicle points of the intervals the segment's samples complete, each with the latest value of
        every quantity and the best fuel rate known at the interval's end; then a due trip rewrite."""
        t, value = segment.t, segment.value
        index = np.floor(t / self.interval_s).astype(np.int64)
        previous = np.concatenate(([index[0] if self._index is None else self._index], index[:-1]))
        changes = np.flatnonzero(index != previous)  # the samples that start a new interval
        samples, lo, hi = segment.samples, segment.lo, segment.hi
        # Per vehicle quantity: (time, value) of its newest sample before each change (None: none in the
        # segment yet), and of its last one.
        newest = []
        for quantity in samples.quantities:
            if quantity in VEHICLE_FIELDS and len(mine := samples.of(quantity, lo, hi)):
                mine = mine - lo
                before = mine[np.maximum(np.searchsorted(mine, changes) - 1, 0)]
                held = zip(t[before].tolist(), value[before].tolist())
                newest.append((quantity, [pair if mine[0] < i else None for pair, i in zip(held, changes.tolist())],
                               (float(t[mine[-1]]), float(value[mine[-1]]))))
        fuel = segment.fuel_rate_lph(changes, FUEL_SOURCES)
        for n, (filled, new) in enumerate(zip(previous[changes].tolist(), index[changes].tolist())):
            for quantity, held, _ in newest:
                if held[n] is not None:
                    self._latest[quantity] = held[n]
            self._index = filled
            self._flush_through(new, fuel[n])
        for quantity, _, last in newest:
            self._latest[quantity] = last
        self._index = int(index[-1])
        trip = segment.trip
        if trip is not None:
            if self._next_trip_update is None:
                self._next_trip_update = float(t[0]) + self.trip_update_s
            elif t[-1] >= self._next_trip_update:
                self._next_trip_update = float(t[-1]) + self.trip_update_s
                self._emit_all(trip_points(trip, self.vehicle_id))

    def on_trip(self, trip: Trip) -> None:
        self._next_trip_update = None
        self._emit_all(trip_points(trip, self.vehicle_id))

    def on_event(self, kind: str, t: float, fields: dict) -> None:
        self.emit(Point("event", t, {**_numbers(fields)}, {"vehicle": self.vehicle_id, "kind": kind}))

    def on_frame(self, frame: DecodedFrame) -> None:
        self.emit(Point("signal", frame.t, _numbers(frame.signals),
                        {"vehicle": self.vehicle_id, "message": frame.message}))

    def _emit_all(self, points: list[Point]) -> None:
        for point in points:
            self.emit(point)

    def _flush_through(self, index: int, fuel: tuple[str, float] | None) -> None:
        """Emit the interval just filled, then held points for the intervals since that had no sample of their
        own (a polled quantity can skip a second), while the held values are fresh: one point per interval."""
        last = self._index
        self._emit_interval(fuel)
        for skipped in range(last + 1, index):
            self._index = skipped
            if not self._emit_interval(fuel):
                break
        self._index = None

    def flush(self) -> bool:
        """Emit the interval being filled (also at the end of input or on shutdown); False if nothing is fresh."""
        return self._emit_interval(self.pipeline.tracker.fuel_rate_lph())

    def _emit_interval(self, best: tuple[str, float] | None) -> bool:
        """The vehicle point of the interval being filled, with ``best`` (source, L/h) as its fuel rate."""
        if self._index is None:
            return False
        start = self._index * self.interval_s
        self._index = None
        latest, end, hold_s = self._latest, start + self.interval_s, self.hold_s
        if len(self._order) != len(latest):  # a quantity seen for the first time
            self._order = [q for q in VEHICLE_FIELD_ORDER if q in latest]
        fields: dict[str, float | str] = {q: held[1] for q in self._order if end - (held := latest[q])[0] <= hold_s}
        if not fields:
            return False
        if "battery_a" in fields and "battery_v" in fields:  # an EV's pack: power out, kW (negative = regen)
            fields["battery_power_kw"] = -fields["battery_v"] * fields["battery_a"] / 1000.0
        if best is not None:
            source, rate_lph = best
            fields["fuel_rate_lph"] = float(rate_lph)
            fields["fuel_source"] = source
            speed = fields.get("speed_kmh")
            if speed and rate_lph > 0:
                fields.update(economy_fields(float(speed) / rate_lph))
        self.emit(Point("vehicle", start, fields, {"vehicle": self.vehicle_id}))
        return True
