"""One trip's running totals, and the trip summary of the stats JSON (the contract the README documents).

Samples arrive as arrays (a segment of a block, one sample or thousands); every figure is a running sum
that takes its terms one at a time in order, so a drive gives the same figures, bit for bit, however its
frames were cut into blocks. Two trips can be merged into the total.
Distance integrates speed by the trapezoid rule; fuel integrates each fuel-rate estimate the same way (times
the fill-up calibration's correction for that source, fixed when the trip starts) and an EV's battery power
likewise; both are attributed to the speed band and domain the car is in. Intervals longer than ``max_gap_s``
are counted as gaps, not integrated. Economy is also given as a percentage of the vehicle profile's catalog
WLTC figure (per domain against the WLTC phase Japanese catalogs quote for it).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

import numpy as np

from firmware_bridge import constants as k
from firmware_bridge.analytics.dynamics import Dynamics, EventCallback
from firmware_bridge.analytics.fuel import FUEL_SOURCES
from firmware_bridge.analytics.sums import sum_by_key, sum_in_order
from firmware_bridge.sources.gps import great_circle_km
from firmware_bridge.analytics.settings import (
    BAND_LABELS, SPEED_BANDS, SPEED_DOMAINS, STANDING_BELOW_KMH, AnalyticsSettings, band_index, domain_index)
from firmware_bridge.vehicles import Catalog


class Integral:
    """Trapezoid ∫ value dt over samples of one series, carried from block to block."""

    def __init__(self, max_gap_s: float) -> None:
        self.max_gap_s = max_gap_s
        self.last: tuple[float, float] | None = None
        self.gaps = 0

    def intervals(self, t: np.ndarray, value: np.ndarray):
        """The intervals ending at each sample: (valid, gap, dt, value before, trapezoid area). The first
        sample of the series, a gap (counted) and time standing still or going back give no valid interval."""
        last = self.last
        t0 = np.concatenate(([last[0] if last else np.nan], t[:-1]))
        v0 = np.concatenate(([last[1] if last else np.nan], value[:-1]))
        dt = t - t0
        gap = dt > self.max_gap_s
        self.gaps += int(gap.sum())
        self.last = (float(t[-1]), float(value[-1]))
        return ~gap & (dt > 0), gap, dt, v0, (v0 + value) / 2 * dt


def _below_zero_area(v0: np.ndarray, v1: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """The part of each trapezoid from v0 to v1 over dt that lies below zero, as a positive number."""
    low, high = np.minimum(v0, v1), np.maximum(v0, v1)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = dt * low * low / (2 * (high - low))  # the straight line crosses zero inside the interval
    return np.where(high <= 0, -(v0 + v1) / 2 * dt, np.where(low >= 0, 0.0, crossing))


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

    def add(self, t: np.ndarray, rate_per_h: np.ndarray, band: np.ndarray, domain: np.ndarray,
            idle: np.ndarray) -> None:
        """Samples of the rate in order, with each one's speed band and domain index and whether idling."""
        valid, _, dt, rate0, area = self.integral.intervals(t, rate_per_h)
        amount = area[valid] / k.S_PER_H
        self.total = sum_in_order(self.total, amount)
        sum_by_key(self.band, band[valid], amount, BAND_LABELS)
        sum_by_key(self.domain, domain[valid], amount, SPEED_DOMAINS)
        self.idle = sum_in_order(self.idle, amount[idle[valid]])
        negative = valid & ((rate_per_h < 0) | (rate0 < 0))
        if negative.any():  # an EV's regeneration
            below = _below_zero_area(rate0[negative], rate_per_h[negative], dt[negative]) / k.S_PER_H
            self.recovered = sum_in_order(self.recovered, below)

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

    # -- feeding: samples of one quantity, in order, as arrays ----------------------------------------
    def add_speeds(self, t: np.ndarray, speed_kmh: np.ndarray, engine_running: np.ndarray,
                   lat: np.ndarray, lon: np.ndarray) -> None:
        """Speed samples; ``lat``/``lon`` the GPS fix at each one if fresh (NaN if not). A gap between two
        fixes is bridged by the distance between them (a GPS outage or corrupt stretch costs no distance, and
        never adds a jump)."""
        top = float(speed_kmh.max())
        self.max_speed_kmh = top if self.max_speed_kmh is None else max(self.max_speed_kmh, top)
        standing = speed_kmh < STANDING_BELOW_KMH
        self.stops += int((standing & ~np.concatenate(([self._standing], standing[:-1]))).sum())
        self._standing = bool(standing[-1])
        self.dynamics.add_speeds(t, speed_kmh)
        previous = self.speed.last
        valid, gap, dt, _, area = self.speed.intervals(t, speed_kmh)
        position = np.column_stack((lat, lon))
        before = np.concatenate(([self._speed_position if self._speed_position is not None else (np.nan, np.nan)],
                                 position[:-1]))
        self._speed_position = None if np.isnan(lat[-1]) else (float(lat[-1]), float(lon[-1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            km, mean_kmh = area / k.S_PER_H, area / dt
        used = valid.copy()
        bridged = []
        for i in np.flatnonzero(gap).tolist():  # gaps are rare: one at a time
            t0 = previous[0] if i == 0 else float(t[i - 1])
            if self.on_event is not None:
                self.on_event("gap", t0, {"duration_s": float(t[i] - t0)})
            if not (np.isnan(position[i]).any() or np.isnan(before[i]).any()):
                km[i] = great_circle_km(*before[i].tolist(), *position[i].tolist())
                mean_kmh[i] = km[i] / dt[i] * k.S_PER_H
                used[i] = True
                bridged.append(km[i])
        self.bridged_km = sum_in_order(self.bridged_km, np.array(bridged))
        self._add_distance(dt[used], km[used], mean_kmh[used], engine_running[used])

    def add_positions(self, lat: np.ndarray, lon: np.ndarray) -> None:
        if self.start_position is None:
            self.start_position = (float(lat[0]), float(lon[0]))
        self.end_position = (float(lat[-1]), float(lon[-1]))

    def _add_distance(self, dt: np.ndarray, km: np.ndarray, mean_kmh: np.ndarray, engine_running: np.ndarray) -> None:
        """``km`` driven over ``dt`` seconds per interval, attributed to the band and domain of its mean speed."""
        self.distance_km = sum_in_order(self.distance_km, km)
        band, domain = band_index(mean_kmh), domain_index(mean_kmh, self.settings)
        sum_by_key(self.band_time_s, band, dt, BAND_LABELS)
        sum_by_key(self.band_km, band, km, BAND_LABELS)
        sum_by_key(self.domain_time_s, domain, dt, SPEED_DOMAINS)
        sum_by_key(self.domain_km, domain, km, SPEED_DOMAINS)
        moving = mean_kmh >= STANDING_BELOW_KMH
        self.moving_time_s = sum_in_order(self.moving_time_s, dt[moving])
        self.idle_time_s = sum_in_order(self.idle_time_s, dt[~moving & engine_running])

    def add_fuel(self, source: str, t: np.ndarray, rate_lph: np.ndarray, speed_kmh: np.ndarray,
                 engine_running: np.ndarray) -> None:
        """Fuel-rate estimates of one source (uncalibrated; the trip applies its correction)."""
        tally = self.fuel.get(source)
        if tally is None:
            tally = self.fuel[source] = RateTally(self.settings.max_gap_s)
        idle = engine_running & (speed_kmh < STANDING_BELOW_KMH)
        tally.add(t, rate_lph * self.fuel_corrections.get(source, 1.0), band_index(speed_kmh),
                  domain_index(speed_kmh, self.settings), idle)

    def add_battery_power(self, t: np.ndarray, power_kw: np.ndarray, speed_kmh: np.ndarray) -> None:
        """Pack power out (kW, negative while regenerating or charging), attributed like fuel."""
        if self.energy is None:
            self.energy = RateTally(self.settings.max_gap_s)
        self.energy.add(t, power_kw, band_index(speed_kmh), domain_index(speed_kmh, self.settings),
                        speed_kmh < STANDING_BELOW_KMH)

    def add_soc(self, soc_pct: np.ndarray) -> None:
        if self.soc_first_pct is None:
            self.soc_first_pct = float(soc_pct[0])
        self.soc_last_pct = float(soc_pct[-1])

    def add_odometer(self, odometer_km: np.ndarray) -> None:
        if self.odometer_first_km is None:
            self.odometer_first_km = float(odometer_km[0])
        self.odometer_last_km = float(odometer_km[-1])

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
        """The TRIP object of the stats JSON: floats, null where the data cannot give them."""
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
