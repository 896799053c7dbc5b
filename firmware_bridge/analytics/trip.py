"""One trip's running totals, and the trip summary of the stats JSON contract (DESIGN §3).

Everything is a running sum updated per sample (O(1)), and two trips can be merged into the total.
Distance integrates speed by the trapezoid rule; fuel integrates each fuel-rate estimate the same way (times
the fill-up calibration's correction for that source, fixed when the trip starts) and an EV's battery power
likewise; both are attributed to the speed band and domain the car is in. Intervals longer than ``max_gap_s``
are counted as gaps, not integrated. Economy is also given as a percentage of the vehicle profile's catalog
WLTC figure (per domain against the WLTC phase Japanese catalogs quote for it).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

from firmware_bridge import constants as k
from firmware_bridge.analytics.dynamics import Dynamics, EventCallback
from firmware_bridge.analytics.fuel import FUEL_SOURCES
from firmware_bridge.sources.gps import great_circle_km
from firmware_bridge.analytics.settings import (
    SPEED_BANDS, SPEED_DOMAINS, STANDING_BELOW_KMH, AnalyticsSettings, band_of, domain_of)
from firmware_bridge.vehicles import Catalog


class Integral:
    """Trapezoid ∫ value dt over samples of one series; returns each interval so callers can attribute it."""

    def __init__(self, max_gap_s: float) -> None:
        self.max_gap_s = max_gap_s
        self.last: tuple[float, float] | None = None
        self.gaps = 0

    def add(self, t: float, value: float) -> tuple[float, float] | None:
        """(dt, area) of the interval ending at t, or None for the first sample or a gap."""
        last, self.last = self.last, (t, value)
        if last is None:
            return None
        dt = t - last[0]
        if dt > self.max_gap_s:
            self.gaps += 1
            return None
        if dt <= 0:
            return None
        return dt, (last[1] + value) / 2 * dt


def _below_zero_area(v0: float, v1: float, dt: float) -> float:
    """The part of the trapezoid from v0 to v1 over dt that lies below zero, as a positive number."""
    if v0 >= 0 and v1 >= 0:
        return 0.0
    if v0 <= 0 and v1 <= 0:
        return -(v0 + v1) / 2 * dt
    low, high = min(v0, v1), max(v0, v1)
    return dt * low * low / (2 * (high - low))  # the straight line crosses zero inside the interval


class RateTally:
    """A per-hour rate integrated over time: fuel (L/h -> L) or battery power (kW -> kWh).

    Totals overall, while standing (idle) and per speed band/domain; what flowed back (negative rates: an EV's
    regeneration) is also summed on its own, so the net total and the recovered part are both known.
    """

    def __init__(self, max_gap_s: float) -> None:
        self.integral = Integral(max_gap_s)
        self.total = 0.0
        self.idle = 0.0
        self.recovered = 0.0
        self.band: defaultdict[str, float] = defaultdict(float)
        self.domain: defaultdict[str, float] = defaultdict(float)

    def add(self, t: float, rate_per_h: float, band: str, domain: str, idle: bool) -> None:
        last = self.integral.last
        step = self.integral.add(t, rate_per_h)
        if step is None:
            return
        dt, area = step
        amount = area / k.S_PER_H
        self.total += amount
        self.band[band] += amount
        self.domain[domain] += amount
        if idle:
            self.idle += amount
        if rate_per_h < 0 or last[1] < 0:
            self.recovered += _below_zero_area(last[1], rate_per_h, dt) / k.S_PER_H

    def absorb(self, other: "RateTally") -> None:
        self.total += other.total
        self.idle += other.idle
        self.recovered += other.recovered
        for mine, theirs in ((self.band, other.band), (self.domain, other.domain)):
            for key, value in theirs.items():
                mine[key] += value


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


class Trip:
    """Running totals of one trip (or of several merged: the ``total``)."""

    def __init__(self, start: float, settings: AnalyticsSettings, on_event: EventCallback | None = None,
                 catalog: Catalog | None = None, fuel_corrections: dict[str, float] | None = None) -> None:
        self.settings = settings
        self.on_event = on_event
        self.catalog = catalog
        #: Fuel source -> factor its estimates are multiplied by (fill-up calibration); {} = uncalibrated.
        self.fuel_corrections = dict(fuel_corrections or {})
        self.start = self.end = self.last_t = start
        self.distance_km = 0.0
        self.moving_time_s = self.idle_time_s = 0.0
        self.max_speed_kmh: float | None = None
        self.stops = 0
        self._standing = True
        self.speed = Integral(settings.max_gap_s)
        self.band_time_s: defaultdict[str, float] = defaultdict(float)
        self.band_km: defaultdict[str, float] = defaultdict(float)
        self.domain_time_s: defaultdict[str, float] = defaultdict(float)
        self.domain_km: defaultdict[str, float] = defaultdict(float)
        self.fuel: dict[str, RateTally] = {}
        self.dynamics = Dynamics(settings, on_event)
        self.energy: RateTally | None = None  # battery power (kW) integrated: kWh out of the pack, net
        self.soc_first_pct: float | None = None
        self.soc_last_pct: float | None = None
        self.odometer_first_km: float | None = None
        self.odometer_last_km: float | None = None
        self.start_position: tuple[float, float] | None = None  # (lat, lon) of the first and last GPS fix
        self.end_position: tuple[float, float] | None = None
        self.bridged_km = 0.0  # distance across gaps, from the GPS positions at their two ends
        self._speed_position: tuple[float, float] | None = None  # position at the last speed sample
        self._merged_duration_s: float | None = None  # the total: trips' durations, not the span between
        self._merged_count = 0

    # -- feeding ---------------------------------------------------------------------------------------
    def add_speed(self, t: float, speed_kmh: float, engine_running: bool,
                  position: tuple[float, float] | None = None) -> None:
        """``position``: the current GPS fix, if fresh; a gap between two fixes is bridged by the distance
        between them (a GPS outage or corrupt stretch costs no distance, and never adds a jump)."""
        self.max_speed_kmh = speed_kmh if self.max_speed_kmh is None else max(self.max_speed_kmh, speed_kmh)
        standing = speed_kmh < STANDING_BELOW_KMH
        if standing and not self._standing:
            self.stops += 1
        self._standing = standing
        self.dynamics.add_speed(t, speed_kmh)
        previous = self.speed.last
        step = self.speed.add(t, speed_kmh)
        last_position, self._speed_position = self._speed_position, position
        if step is None:
            if previous is not None and t - previous[0] > self.settings.max_gap_s:
                if self.on_event is not None:
                    self.on_event("gap", previous[0], {"duration_s": float(t - previous[0])})
                if position is not None and last_position is not None:
                    km = great_circle_km(*last_position, *position)
                    self.bridged_km += km
                    dt = t - previous[0]
                    self._add_distance(dt, km, km / dt * k.S_PER_H, engine_running)
            return
        dt, area = step
        self._add_distance(dt, area / k.S_PER_H, area / dt, engine_running)

    def add_position(self, lat: float, lon: float) -> None:
        if self.start_position is None:
            self.start_position = (lat, lon)
        self.end_position = (lat, lon)

    def _add_distance(self, dt: float, km: float, mean_kmh: float, engine_running: bool) -> None:
        """``km`` driven over ``dt`` seconds, attributed to the band and domain of its mean speed."""
        self.distance_km += km
        band, domain = band_of(mean_kmh), domain_of(mean_kmh, self.settings)
        self.band_time_s[band] += dt
        self.band_km[band] += km
        self.domain_time_s[domain] += dt
        self.domain_km[domain] += km
        if mean_kmh >= STANDING_BELOW_KMH:
            self.moving_time_s += dt
        elif engine_running:
            self.idle_time_s += dt

    def add_fuel(self, source: str, t: float, rate_lph: float, speed_kmh: float, engine_running: bool) -> None:
        tally = self.fuel.get(source)
        if tally is None:
            tally = self.fuel[source] = RateTally(self.settings.max_gap_s)
        idle = engine_running and speed_kmh < STANDING_BELOW_KMH
        rate_lph *= self.fuel_corrections.get(source, 1.0)
        tally.add(t, rate_lph, band_of(speed_kmh), domain_of(speed_kmh, self.settings), idle)

    def add_battery_power(self, t: float, power_kw: float, speed_kmh: float) -> None:
        """Pack power out (kW, negative while regenerating or charging), attributed like fuel."""
        if self.energy is None:
            self.energy = RateTally(self.settings.max_gap_s)
        self.energy.add(t, power_kw, band_of(speed_kmh), domain_of(speed_kmh, self.settings),
                        speed_kmh < STANDING_BELOW_KMH)

    def add_soc(self, soc_pct: float) -> None:
        if self.soc_first_pct is None:
            self.soc_first_pct = soc_pct
        self.soc_last_pct = soc_pct

    def add_odometer(self, odometer_km: float) -> None:
        if self.odometer_first_km is None:
            self.odometer_first_km = odometer_km
        self.odometer_last_km = odometer_km

    # -- merging and reporting -------------------------------------------------------------------------
    @property
    def gaps(self) -> int:
        return self.speed.gaps

    @property
    def odometer_distance_km(self) -> float | None:
        if self.odometer_first_km is None:
            return None
        return self.odometer_last_km - self.odometer_first_km

    @property
    def fuel_source(self) -> str | None:
        for source in FUEL_SOURCES:
            if source in self.fuel:
                return source
        return "battery" if self.energy is not None else None

    def absorb(self, other: "Trip") -> None:
        """Add another trip's totals into this one (for the stats ``total``)."""
        self._merged_duration_s = self.duration_s + other.duration_s
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.distance_km += other.distance_km
        self.moving_time_s += other.moving_time_s
        self.idle_time_s += other.idle_time_s
        if other.max_speed_kmh is not None:
            self.max_speed_kmh = max(self.max_speed_kmh or 0.0, other.max_speed_kmh)
        self.stops += other.stops
        self.speed.gaps += other.speed.gaps
        self.bridged_km += other.bridged_km
        self.start_position = self.start_position or other.start_position
        self.end_position = other.end_position or self.end_position
        for mine, theirs in ((self.band_time_s, other.band_time_s), (self.band_km, other.band_km),
                             (self.domain_time_s, other.domain_time_s), (self.domain_km, other.domain_km)):
            for key, value in theirs.items():
                mine[key] += value
        for source, tally in other.fuel.items():
            self.fuel.setdefault(source, RateTally(self.settings.max_gap_s)).absorb(tally)
        self.dynamics.absorb(other.dynamics)
        if other.energy is not None:
            if self.energy is None:
                self.energy = RateTally(self.settings.max_gap_s)
            self.energy.absorb(other.energy)
        self.catalog = self.catalog or other.catalog
        if self._merged_count == 0:
            self.fuel_corrections = dict(other.fuel_corrections)
            self.soc_first_pct = other.soc_first_pct
        else:  # a total over trips calibrated differently has no single correction to name
            self.fuel_corrections = {s: f for s, f in self.fuel_corrections.items()
                                     if other.fuel_corrections.get(s) == f}
        self._merged_count += 1
        self.soc_last_pct = other.soc_last_pct if other.soc_last_pct is not None else self.soc_last_pct

    @property
    def duration_s(self) -> float:
        return self.end - self.start if self._merged_duration_s is None else self._merged_duration_s

    def _catalog_pct(self, domain: str | None, km_per_l: float | None, wh_per_km: float | None) -> float | None:
        """Economy as % of the catalog figure, above 100 = better; for EVs km/kWh against the catalog's."""
        if self.catalog is None:
            return None
        catalog_km_per_l = self.catalog.km_per_l(domain)
        if km_per_l is not None and catalog_km_per_l:
            return 100.0 * km_per_l / catalog_km_per_l
        catalog_wh_per_km = self.catalog.wh_per_km(domain)
        if wh_per_km and catalog_wh_per_km:
            return 100.0 * catalog_wh_per_km / wh_per_km
        return None

    def _economy(self, domain: str | None, distance_km: float, fuel_l: float | None,
                 energy_kwh: float | None) -> dict:
        """km/L, Wh/km, km/kWh and catalog_pct of one part of the trip (a domain, or all of it)."""
        km_per_l = _ratio(distance_km, fuel_l)
        wh_per_km = _ratio(1000.0 * energy_kwh, distance_km) if energy_kwh is not None else None
        return {"economy_km_per_l": km_per_l, "economy_wh_per_km": wh_per_km,
                "economy_km_per_kwh": _ratio(distance_km, energy_kwh),
                "catalog_pct": self._catalog_pct(domain, km_per_l, wh_per_km)}

    def summary(self) -> dict:
        """The TRIP object of the stats JSON (DESIGN §3): floats, null where the data cannot give them."""
        source = self.fuel_source
        tally = self.fuel.get(source) if source in FUEL_SOURCES else None
        energy = self.energy
        fuel_l = tally.total if tally else None
        distance_km = self.distance_km
        if not self.speed.last and self.odometer_distance_km is not None:
            distance_km = self.odometer_distance_km  # no speed signal: the odometer is all we have
        economy = self._economy(None, distance_km, fuel_l, energy.total if energy else None)
        km_per_l = economy["economy_km_per_l"]
        price = self.settings.fuel_price_per_l
        domains = {}
        for domain in SPEED_DOMAINS:
            domain_km = self.domain_km.get(domain, 0.0)
            domain_fuel = tally.domain.get(domain, 0.0) if tally else None
            domain_kwh = energy.domain.get(domain, 0.0) if energy else None
            domains[domain] = {"time_s": self.domain_time_s.get(domain, 0.0), "distance_km": domain_km,
                               "fuel_l": domain_fuel, "energy_kwh": domain_kwh,
                               **self._economy(domain, domain_km, domain_fuel, domain_kwh)}
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "duration_s": float(self.duration_s),
            "moving_time_s": self.moving_time_s,
            "idle_time_s": self.idle_time_s,
            "distance_km": distance_km,
            "fuel_used_l": fuel_l,
            "fuel_source": source,
            "fuel_correction": self.fuel_corrections.get(source) if tally else None,
            "economy_km_per_l": km_per_l,
            "economy_l_per_100km": _ratio(100.0 * fuel_l, distance_km) if fuel_l is not None else None,
            "economy_mpg_us": km_per_l * k.KM_PER_L_TO_MPG_US if km_per_l is not None else None,
            "idle_fuel_l": tally.idle if tally else None,
            "co2_kg": fuel_l * k.CO2_KG_PER_L_GASOLINE if fuel_l is not None else None,
            "fuel_cost": fuel_l * price if fuel_l is not None and price is not None else None,
            "mean_speed_kmh": _ratio(distance_km, self.duration_s / k.S_PER_H),
            "max_speed_kmh": self.max_speed_kmh,
            "stops": float(self.stops),
            "gaps": float(self.gaps),
            "speed_bands": {label: {"time_s": self.band_time_s.get(label, 0.0),
                                    "distance_km": self.band_km.get(label, 0.0),
                                    "fuel_l": tally.band.get(label, 0.0) if tally else None}
                            for _, label in SPEED_BANDS},
            "speed_domains": domains,
            "rpa_m_s2": self.dynamics.rpa_m_s2,
            "va_pos_95_m2_s3": self.dynamics.va_pos_95_m2_s3,
            "harsh_accel_events": float(self.dynamics.harsh_accel_events),
            "harsh_brake_events": float(self.dynamics.harsh_brake_events),
            "energy_kwh": energy.total if energy else None,
            "economy_wh_per_km": economy["economy_wh_per_km"],
            "economy_km_per_kwh": economy["economy_km_per_kwh"],
            "energy_regen_kwh": energy.recovered if energy else None,
            "soc_start_pct": self.soc_first_pct,
            "soc_end_pct": self.soc_last_pct,
            "catalog_pct": economy["catalog_pct"],
            "gap_bridged_km": self.bridged_km,
            "start_lat": self.start_position[0] if self.start_position else None,
            "start_lon": self.start_position[1] if self.start_position else None,
            "end_lat": self.end_position[0] if self.end_position else None,
            "end_lon": self.end_position[1] if self.end_position else None,
        }
