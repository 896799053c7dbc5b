"""From fill-ups and trips to a correction per fuel source: pumped litres ÷ the agent's estimate.

Between two full-tank fill-ups the car burnt exactly what the second one (plus any partial ones between)
pumped back in. The agent's estimate for the same stretch is the sum of its trips' uncorrected fuel there; a
trip belongs to the stretch its odometer midpoint (or, without an odometer, its time midpoint) falls in, so an
odometer read to the whole km at the pump never splits a trip. A stretch counts only when the trips cover
MIN_COVERAGE..MAX_COVERAGE of its odometer distance: trips missing (agent off, logs lost) would make the car
look thirstier than the estimate, a wrong odometer entry the opposite.

The factor is Σ pumped / Σ estimated over the stretches (a distance-weighted mean, never a mean of ratios), and
its confidence is the number of stretches and the spread (sample standard deviation) of their own factors.
For speed-density the factor is a correction of the volumetric efficiency (fuel is proportional to VE); for
MAF or the ECU's fuel rate, of the sensor's scale.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from firmware_bridge.calibration.ledger import Fillup, TripRecord

#: Share of a stretch's odometer distance the recorded trips must cover for the stretch to count.
MIN_COVERAGE = 0.9
MAX_COVERAGE = 1.1


@dataclass(frozen=True)
class Interval:
    """The stretch between two full-tank fill-ups and the trips driven in it."""

    start: Fillup
    end: Fillup
    pumped_l: float
    trips: int
    trip_km: float
    estimated_l: float  # the trips' uncorrected estimate
    fuel_source: str | None  # the source that estimated most of it

    @property
    def distance_km(self) -> float:
        return self.end.odometer_km - self.start.odometer_km

    @property
    def coverage(self) -> float:
        return self.trip_km / self.distance_km if self.distance_km > 0 else 0.0

    @property
    def usable(self) -> bool:
        return self.estimated_l > 0 and self.fuel_source is not None and MIN_COVERAGE <= self.coverage <= MAX_COVERAGE

    @property
    def factor(self) -> float | None:
        return self.pumped_l / self.estimated_l if self.estimated_l > 0 else None

    @property
    def pumped_km_per_l(self) -> float | None:
        return self.distance_km / self.pumped_l if self.pumped_l > 0 else None

    @property
    def estimated_km_per_l(self) -> float | None:
        return self.trip_km / self.estimated_l if self.estimated_l > 0 else None


@dataclass(frozen=True)
class Correction:
    """What the agent multiplies one fuel source's estimates by, and how far to trust it."""

    fuel_source: str
    factor: float
    intervals: int
    spread: float | None  # sample standard deviation of the intervals' factors; None from a single interval

    def volumetric_efficiency(self, profile_ve: float) -> float | None:
        """The calibrated VE, for speed-density (the estimate is proportional to VE)."""
        return profile_ve * self.factor if self.fuel_source == "speed_density" else None


def _position(trip: TripRecord) -> tuple[str, float]:
    if trip.odometer_start_km is not None and trip.odometer_end_km is not None:
        return "odometer", (trip.odometer_start_km + trip.odometer_end_km) / 2
    return "time", (trip.start_t + trip.end_t) / 2


def _inside(trip: TripRecord, start: Fillup, end: Fillup) -> bool:
    kind, where = _position(trip)
    if kind == "odometer":
        return start.odometer_km < where <= end.odometer_km
    return start.t < where <= end.t


def intervals(fillups: list[Fillup], trips: list[TripRecord]) -> list[Interval]:
    """One interval per pair of consecutive full fill-ups (``fillups`` in the order they happened)."""
    out = []
    full = [i for i, f in enumerate(fillups) if not f.partial]
    for a, b in zip(full, full[1:]):
        start, end = fillups[a], fillups[b]
        pumped_l = sum(f.litres for f in fillups[a + 1:b + 1])
        inside = [t for t in trips if t.raw_fuel_l is not None and _inside(t, start, end)]
        by_source: dict[str, float] = {}
        for trip in inside:
            by_source[trip.fuel_source] = by_source.get(trip.fuel_source, 0.0) + trip.raw_fuel_l
        out.append(Interval(start, end, pumped_l, len(inside), sum(t.distance_km for t in inside),
                            sum(by_source.values()), max(by_source, key=by_source.get) if by_source else None))
    return out


def fit(spans: list[Interval], min_intervals: int = 1) -> dict[str, Correction]:
    """A correction per fuel source with at least ``min_intervals`` usable intervals."""
    by_source: dict[str, list[Interval]] = {}
    for interval in spans:
        if interval.usable:
            by_source.setdefault(interval.fuel_source, []).append(interval)
    corrections = {}
    for source, usable in by_source.items():
        if len(usable) < max(min_intervals, 1):
            continue
        factors = [i.factor for i in usable]
        corrections[source] = Correction(source, sum(i.pumped_l for i in usable) / sum(i.estimated_l for i in usable),
                                         len(usable), statistics.stdev(factors) if len(factors) > 1 else None)
    return corrections
