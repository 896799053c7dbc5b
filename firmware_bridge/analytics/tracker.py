"""Trip boundaries: a trip starts on engine or bus activity and ends after silence, engine-off or ignition-off.

Fed with blocks of accepted vehicle samples; splits them into segments at the samples where a trip starts or
ends (or a listener wants the trip's figures), accounts each segment as arrays and hands out finished
:class:`Trip` objects. Idle-stop at a
light (rpm 0 for a minute) does not end a trip; a parked car (rpm 0 and standing for ``engine_off_s``) does.
Fuel readings alone never start one (a parked car's ECU or stray frames are not a drive). A trip shorter than ``min_trip_s`` is dropped with a WARNING and counted. Time that steps backwards (a clock
reset, logs out of order) never shortens a trip: its start, end and last sample time only move forwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from firmware_bridge.analytics.dynamics import EventCallback
from firmware_bridge.analytics.fuel import FUEL_INPUTS, FUEL_SOURCES, FuelEstimator
from firmware_bridge.analytics.settings import STANDING_BELOW_KMH, AnalyticsSettings
from firmware_bridge.analytics.trip import Trip
from firmware_bridge.records import SampleBlock, Segment
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

    # -- splitting a block ---------------------------------------------------------------------------------
    def feed(self, samples: SampleBlock, on_segment: Callable[[Segment], None],
             on_trip: Callable[[Trip], None], due_t: Callable[[], float | None] = lambda: None) -> None:
        """Account a block of samples: split where a trip starts or ends and where a listener is due (its
        segment then ends with the first sample at or after ``due_t()``), each segment accounted as arrays and
        then handed to ``on_segment``; finished trips go to ``on_trip`` at the point they end."""
        pos, n = 0, len(samples)
        while pos < n:
            if self.trip is None:
                start = pos + _first(self._activity(samples, pos))
                if start > pos:
                    on_segment(self._segment(samples, pos, start))
                if start == n:
                    return
                self._parked = False
                self._engine_off_since = None
                self.trip = Trip(float(samples.t[start]), self.settings, self.on_event, self.profile.catalog,
                                 self.fuel_corrections)
                pos = start
            end, closing = self._boundary(samples, pos, due_t())
            if end > pos:
                segment = self._segment(samples, pos, end)
                self._account(self.trip, segment)
                on_segment(segment)
            pos = end
            if closing is not None:  # the sample at ``end`` ends the trip; it then belongs to what follows
                close_t, parked = closing
                closed = self._close(self.trip.last_t if close_t is None else close_t, parked)
                if closed is not None:
                    on_trip(closed)

    def _activity(self, samples: SampleBlock, lo: int) -> np.ndarray:
        """What may start a trip, from sample lo on: the engine running, the ignition on, the car moving; after
        a parked end nothing else, and never fuel alone."""
        q, v = samples.qid[lo:], samples.value[lo:]
        rpm_or_ignition = _any_of(q, samples, ("engine_rpm", "ignition"))
        speed = q == samples.index("speed_kmh")
        other = ~rpm_or_ignition & ~speed & ~_any_of(q, samples, FUEL_INPUTS)
        return (rpm_or_ignition & (v > 0)) | (speed & (v >= STANDING_BELOW_KMH)) | (other & (not self._parked))

    def _boundary(self, samples: SampleBlock, lo: int, due: float | None):
        """Where the open trip's segment from lo ends: (end, closing). closing is (time the trip ends at, None
        for its last sample; parked) when the sample at ``end`` ends it: bus silence before it, engine off for
        engine_off_s, ignition off. None: the block ended, or a listener is due at the segment's last sample."""
        settings, t = self.settings, samples.t
        due_at = _first(t[lo:] >= due) if due is not None else len(samples) - lo
        n = min(lo + due_at + 1, len(samples))  # nothing past the due sample can end this segment
        # bus silence: a sample further than trip_gap_s after every sample before it
        newest_before = np.maximum.accumulate(np.concatenate(([self.trip.last_t], t[lo:n - 1])))
        silence = _first(t[lo:n] - newest_before > settings.trip_gap_s)
        since = self._engine_off_times(samples, lo, n)
        expired = _first(~np.isnan(since) & (t[lo:n] - since >= settings.engine_off_s))
        ignition_off = _first((samples.qid[lo:n] == samples.index("ignition")) & (samples.value[lo:n] <= 0))
        first = min(silence, expired, ignition_off)
        if due_at < first:
            self._engine_off_since = _since_value(since[due_at])
            return lo + due_at + 1, None
        if first == n - lo:
            self._engine_off_since = _since_value(since[-1])
            return n, None
        if first == silence:
            return lo + first, (None, False)
        if first == expired:
            return lo + first, (float(since[first]), True)
        return lo + first, (float(t[lo + first]), True)

    def _engine_off_times(self, samples: SampleBlock, lo: int, hi: int) -> np.ndarray:
        """Since when the engine has been off with the car standing, after each sample in [lo, hi) (NaN: it is
        not), re-evaluated at engine-rpm and speed samples."""
        t, qid = samples.t[lo:hi], samples.qid[lo:hi]
        inputs = np.flatnonzero(_any_of(qid, samples, ENGINE_OFF_INPUTS))
        carried = np.nan if self._engine_off_since is None else self._engine_off_since
        if not len(inputs):
            return np.full(len(t), carried)
        at = lo + inputs
        rpm, has_rpm = samples.latest("engine_rpm", at)
        _, has_ignition = samples.latest("ignition", at)
        _, has_gps = samples.latest("gps_speed_kmh", at)
        # A car that tells nothing of its engine but has a GPS (a GPS-only car) is parked when it stands.
        no_engine_data = ~has_rpm & ~has_ignition & has_gps
        rpm = np.where(has_rpm, rpm, np.where(no_engine_data, 0.0, 1.0))
        speed, _ = samples.latest("speed_kmh", at, default=0.0)
        off = (rpm <= 0) & (speed < STANDING_BELOW_KMH)
        starts = off & ~np.concatenate(([not np.isnan(carried)], off[:-1]))
        run_start = np.maximum.accumulate(np.where(starts, np.arange(len(off)), -1))
        since_at_inputs = np.where(off, np.where(run_start >= 0, t[inputs][np.maximum(run_start, 0)], carried), np.nan)
        is_input = np.zeros(len(t), dtype=np.int64)
        is_input[inputs] = 1
        last_input = np.cumsum(is_input) - 1  # the newest input at or before each sample
        return np.where(last_input >= 0, since_at_inputs[np.maximum(last_input, 0)], carried)

    def _segment(self, samples: SampleBlock, lo: int, hi: int) -> Segment:
        return Segment(samples, lo, hi, self.trip, {}, dict(self.latest_fuel_lph))

    # -- accounting a segment --------------------------------------------------------------------------
    def _account(self, trip: Trip, segment: Segment) -> None:
        samples, lo, hi = segment.samples, segment.lo, segment.hi
        settings = self.settings

        def running(at: np.ndarray) -> np.ndarray:
            return samples.latest("engine_rpm", at, default=1.0)[0] > 0

        def speed(at: np.ndarray) -> np.ndarray:
            return samples.latest("speed_kmh", at, default=0.0)[0]

        ends = [trip.end]
        if len(at := samples.of("speed_kmh", lo, hi)):
            fresh = samples.t[at] - samples.latest_t("lat", at) <= settings.max_gap_s
            lat, has_lat = samples.latest("lat", at)
            lon, has_lon = samples.latest("lon", at)
            fix = fresh & has_lat & has_lon
            trip.add_speeds(samples.t[at], samples.value[at], running(at), np.where(fix, lat, np.nan),
                            np.where(fix, lon, np.nan))
            ends.append(float(samples.t[at].max()))
        if len(at := samples.of("lat", lo, hi)):
            lon, has_lon = samples.latest("lon", at)
            if has_lon.any():
                trip.add_positions(samples.value[at][has_lon], lon[has_lon])
        if len(at := samples.of("odometer_km", lo, hi)):
            trip.add_odometer(samples.value[at])
        if len(at := samples.of("battery_a", lo, hi)):
            volts, has_volts = samples.latest("battery_v", at)
            at, volts = at[has_volts], volts[has_volts]
            if len(at):  # negative current = discharge: power out = -V*I
                trip.add_battery_power(samples.t[at], -volts * samples.value[at] / 1000.0, speed(at))
        if len(at := samples.of("soc_pct", lo, hi)):
            trip.add_soc(samples.value[at])
        if len(at := samples.of("engine_rpm", lo, hi)) and len(at := at[samples.value[at] > 0]):
            ends.append(float(samples.t[at].max()))
        trip.end = max(ends)
        for source, at, rate_lph in self.fuel.estimates(samples, lo, hi):
            trip.add_fuel(source, samples.t[at], rate_lph, speed(at), running(at))
            calibrated = rate_lph * trip.fuel_corrections.get(source, 1.0)
            segment.fuel_lph[source] = (at, calibrated)
            self.latest_fuel_lph[source] = float(calibrated[-1])
        trip.last_t = max(trip.last_t, float(samples.t[lo:hi].max()))

    # -- ending trips ----------------------------------------------------------------------------------
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


def _any_of(qid: np.ndarray, samples: SampleBlock, quantities: tuple[str, ...]) -> np.ndarray:
    """Which of these samples give one of the quantities (a comparison each: a few, where isin would sort)."""
    first, *rest = (samples.index(q) for q in quantities)
    mask = qid == first
    for q in rest:
        mask |= qid == q
    return mask


def _first(mask: np.ndarray) -> int:
    """Index of the first True (len(mask) if none)."""
    return int(np.argmax(mask)) if mask.any() else len(mask)


def _since_value(since: float) -> float | None:
    return None if np.isnan(since) else float(since)
