"""Trip boundaries: a trip starts on engine or bus activity and ends after silence, engine-off or ignition-off.

Fed with every accepted vehicle sample in time order; hands out finished :class:`Trip` objects. Idle-stop at a
light (rpm 0 for a minute) does not end a trip; a parked car (rpm 0 and standing for ``engine_off_s``) does.
Fuel readings alone never start one (a parked car's ECU or stray frames are not a drive). A trip shorter than ``min_trip_s`` is dropped with a WARNING and counted. Time that steps backwards (a clock
reset, logs out of order) never shortens a trip: its start, end and last sample time only move forwards.
"""

from __future__ import annotations

import logging

from firmware_bridge.analytics.dynamics import EventCallback
from firmware_bridge.analytics.fuel import FUEL_INPUTS, FUEL_SOURCES, FuelEstimator
from firmware_bridge.analytics.settings import STANDING_BELOW_KMH, AnalyticsSettings
from firmware_bridge.analytics.trip import Trip
from firmware_bridge.records import Sample
from firmware_bridge.vehicles import VehicleProfile

log = logging.getLogger(__name__)

#: Quantities whose samples re-evaluate engine-off.
ENGINE_OFF_INPUTS = ("engine_rpm", "speed_kmh")


class TripTracker:
    def __init__(self, settings: AnalyticsSettings, profile: VehicleProfile) -> None:
        self.settings = settings
        self.profile = profile
        self.fuel = FuelEstimator(profile)
        #: Fuel source -> correction factor from fill-up calibration, taken by each trip as it starts.
        self.fuel_corrections: dict[str, float] = {}
        self.trip: Trip | None = None
        self.finished: list[Trip] = []
        #: At most this many finished trips kept (None: all): a daemon running for months would otherwise
        #: keep every trip it ever saw (~26 KB each); InfluxDB has them all.
        self.keep_finished: int | None = None
        self.dropped_short = 0  # trips shorter than min_trip_s, each also reported as a WARNING
        self._parked = False  # the last trip ended by engine/ignition off: only activity starts the next
        self._engine_off_since: float | None = None
        self.latest_fuel_lph: dict[str, float] = {}  # newest estimate per fuel source, for live views
        self.on_event: EventCallback | None = None  # harsh_accel, harsh_brake, gap
        #: quantity -> time of its newest value (the vehicle state's; a GPS position is fresh or not).
        self.times: dict[str, float] = {}

    @staticmethod
    def _engine_running(values: dict[str, float]) -> bool:
        return values.get("engine_rpm", 1.0) > 0

    def _is_activity(self, sample: Sample) -> bool:
        """What starts a trip: the engine running, the ignition on, the car moving; after a parked end nothing
        else, and never fuel alone."""
        q, v = sample.quantity, sample.value
        if q == "engine_rpm" or q == "ignition":
            return v > 0
        if q == "speed_kmh":
            return v >= STANDING_BELOW_KMH
        return not self._parked and q not in FUEL_INPUTS

    def feed(self, sample: Sample, values: dict[str, float]) -> Trip | None:
        """Account one sample; returns a trip that this sample closed, if any."""
        closed = None
        t = sample.t
        trip = self.trip
        if trip is not None and t - trip.last_t > self.settings.trip_gap_s:
            closed = self._close(trip.last_t)
            trip = None
        if trip is None:
            if not self._is_activity(sample):
                return closed
            self._parked = False
            self._engine_off_since = None
            trip = self.trip = Trip(t, self.settings, self.on_event, self.profile.catalog, self.fuel_corrections)
        trip.last_t = max(trip.last_t, t)
        if self._update_engine_off(sample, values) and t - self._engine_off_since >= self.settings.engine_off_s:
            return self._close(self._engine_off_since, parked=True) or closed
        if sample.quantity == "ignition" and sample.value <= 0:
            return self._close(t, parked=True) or closed
        self._account(trip, sample, values)
        return closed

    def _update_engine_off(self, sample: Sample, values: dict[str, float]) -> bool:
        """Track since when the engine has been off with the car standing; True while it is."""
        if sample.quantity in ENGINE_OFF_INPUTS:
            # A car that tells nothing of its engine but has a GPS (a GPS-only car) is parked when it stands.
            no_engine_data = "engine_rpm" not in values and "ignition" not in values and "gps_speed_kmh" in values
            rpm = values.get("engine_rpm", 0.0 if no_engine_data else 1.0)
            off = rpm <= 0 and values.get("speed_kmh", 0.0) < STANDING_BELOW_KMH
            if not off:
                self._engine_off_since = None
            elif self._engine_off_since is None:
                self._engine_off_since = sample.t
        return self._engine_off_since is not None

    def _account(self, trip: Trip, sample: Sample, values: dict[str, float]) -> None:
        q, t = sample.quantity, sample.t
        running = self._engine_running(values)
        if q == "speed_kmh":
            fresh = t - self.times.get("lat", float("-inf")) <= self.settings.max_gap_s
            trip.add_speed(t, sample.value, running, (values["lat"], values["lon"]) if fresh else None)
            trip.end = max(trip.end, t)
        elif q == "lat" and "lon" in values:
            trip.add_position(sample.value, values["lon"])
        elif q == "odometer_km":
            trip.add_odometer(sample.value)
        elif q == "battery_a" and "battery_v" in values:  # negative current = discharge: power out = -V*I
            trip.add_battery_power(t, -values["battery_v"] * sample.value / 1000.0, values.get("speed_kmh", 0.0))
        elif q == "soc_pct":
            trip.add_soc(sample.value)
        if q == "engine_rpm" and sample.value > 0:
            trip.end = max(trip.end, t)
        speed = values.get("speed_kmh", 0.0)
        for source, rate_lph in self.fuel.estimates(q, sample.value, values):
            self.latest_fuel_lph[source] = rate_lph * trip.fuel_corrections.get(source, 1.0)
            trip.add_fuel(source, t, rate_lph, speed, running)

    def _close(self, end: float, parked: bool = False) -> Trip | None:
        trip, self.trip = self.trip, None
        self._parked = parked
        self._engine_off_since = None
        if trip is None:
            return None
        trip.end = max(min(trip.end, end) if trip.end > trip.start else end, trip.start)
        if trip.end - trip.start < self.settings.min_trip_s:
            self.dropped_short += 1
            log.warning("a trip of %.0f s from %s is shorter than min_trip_s (%g s): dropped (%d so far)",
                        trip.end - trip.start, trip.summary()["start"], self.settings.min_trip_s, self.dropped_short)
            return None
        self.finished.append(trip)
        if self.keep_finished is not None and len(self.finished) > self.keep_finished:
            del self.finished[0]
        return trip

    def fuel_rate_lph(self) -> tuple[str, float] | None:
        """The best current fuel-rate estimate and its source."""
        for source in FUEL_SOURCES:
            if source in self.latest_fuel_lph:
                return source, self.latest_fuel_lph[source]
        return None

    def close(self) -> Trip | None:
        """End of input (or of the drive): close the open trip at its last sample."""
        if self.trip is None:
            return None
        return self._close(self.trip.last_t)

    def tick(self, now: float) -> Trip | None:
        """Live mode: end the trip when the bus has been silent for ``trip_gap_s``."""
        if self.trip is not None and now - self.trip.last_t > self.settings.trip_gap_s:
            return self._close(self.trip.last_t)
        return None
