"""Replay's shortcut through steady driving: a stretch of samples applied to the open trip with numpy.

Why: per-sample analytics cost a few µs a sample in Python, several samples a frame, and a year of logs is tens
of millions of frames. While a trip is under way with nothing happening to its boundaries (no silence, engine
running or car moving, ignition on, no quantity appearing for the first time, speed samples close together),
feeding a sample only adds terms to running sums. Those terms are computed here as arrays with the same
floating-point operations, and each sum takes them one at a time in the same order (numpy's cumulative sum),
so the trip ends up in the state, bit for bit, that :meth:`TripTracker.feed` would have left. Everything else
(trip starts and ends, engine-off, gaps, a source's first sample) is left to the per-frame path: this is a
shortcut through the same state, not a second set of rules for the edges. It reads and writes the running
state the trip's, dynamics' and tracker's own methods keep (their private fields included), so a change to
those methods needs the same change here: tests/test_fast_replay.py holds the stats JSON of both paths to be
identical on simulated petrol, OBD-only and EV drives and on logs edited to hit every edge.

Listeners that turn samples into points (``replay``: a vehicle point a second, trip rewrites, agent health) take
a stretch whole (:class:`Stretch`) and say from which frame time they need samples one by one again (``due_t``),
so the points come out as the per-sample path makes them (same test file).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from firmware_bridge import constants as k
from firmware_bridge.analytics.dynamics import VA_BIN_M2_S3, Dynamics
from firmware_bridge.analytics.fuel import (
    ENRICHMENT_MIN_LOAD_PCT, FUEL_SOURCES, HIGH_LOAD_THROTTLE_PCT, STATUS_OPEN_LOOP_LOAD_OR_CUT, fuel_lph_from_maf,
    maf_gps_speed_density)
from firmware_bridge.analytics.settings import (
    RDE_POSITIVE_ACCEL_MS2, SPEED_BANDS, SPEED_DOMAINS, STANDING_BELOW_KMH, AnalyticsSettings)
from firmware_bridge.analytics.tracker import ENGINE_OFF_INPUTS
from firmware_bridge.analytics.trip import RateTally, Trip, _below_zero_area
from firmware_bridge.state.columns import BlockSamples

_BAND_LOWERS = np.array([lower for lower, _ in SPEED_BANDS])
_BANDS = [name for _, name in SPEED_BANDS]


def _sum_in_order(start: float, terms: np.ndarray) -> float:
    """start + terms[0] + terms[1] + ... one addition at a time, as a Python loop of += would."""
    if not len(terms):
        return start
    return float(np.cumsum(np.concatenate(([start], terms)))[-1])


def _sum_by_key(sums: dict, keys: np.ndarray, terms: np.ndarray, labels: list[str]) -> None:
    """sums[labels[key]] += term for each (key, term) in order (a defaultdict(float) as the trip keeps them)."""
    for key in np.flatnonzero(np.bincount(keys, minlength=len(labels))).tolist():
        label = labels[key]
        sums[label] = _sum_in_order(sums.get(label, 0.0), terms[keys == key])


def _bands(speed_kmh: np.ndarray) -> np.ndarray:
    """band_of() on an array: the last band whose lower bound the speed reaches (the first below 0)."""
    return np.maximum(np.searchsorted(_BAND_LOWERS, speed_kmh, side="right") - 1, 0)


def _domains(speed_kmh: np.ndarray, settings: AnalyticsSettings) -> np.ndarray:
    return np.where(speed_kmh <= settings.urban_max_kmh, 0, np.where(speed_kmh <= settings.suburban_max_kmh, 1, 2))


def _intervals(last: tuple[float, float] | None, t: np.ndarray, v: np.ndarray, max_gap_s: float):
    """Integral.add over arrays: (valid, gap, dt, previous values, trapezoid areas)."""
    t0 = np.concatenate(([last[0] if last else np.nan], t[:-1]))
    v0 = np.concatenate(([last[1] if last else np.nan], v[:-1]))
    dt = t - t0
    gap = dt > max_gap_s
    valid = ~gap & (dt > 0)
    return valid, gap, dt, v0, (v0 + v) / 2 * dt


def _add_rates(tally: RateTally, t: np.ndarray, rate: np.ndarray, band: np.ndarray, domain: np.ndarray,
               idle: np.ndarray, max_gap_s: float) -> None:
    """RateTally.add for each sample in order."""
    valid, gap, dt, rate0, area = _intervals(tally.integral.last, t, rate, max_gap_s)
    tally.integral.gaps += int(gap.sum())
    tally.integral.last = (float(t[-1]), float(rate[-1]))
    amount = area[valid] / k.S_PER_H
    tally.total = _sum_in_order(tally.total, amount)
    _sum_by_key(tally.band, band[valid], amount, _BANDS)
    _sum_by_key(tally.domain, domain[valid], amount, list(SPEED_DOMAINS))
    tally.idle = _sum_in_order(tally.idle, amount[idle[valid]])
    negative = np.flatnonzero(valid & ((rate < 0) | (rate0 < 0)))
    if len(negative):  # an EV's regeneration: the scalar formula, term by term
        below = [_below_zero_area(a, b, d) / k.S_PER_H
                 for a, b, d in zip(rate0[negative].tolist(), rate[negative].tolist(), dt[negative].tolist())]
        tally.recovered = _sum_in_order(tally.recovered, np.array(below))


def _add_dynamics(dynamics: Dynamics, t: np.ndarray, v: np.ndarray) -> None:
    """Dynamics.add_speed for samples that follow its last one closely (no reset): 1 Hz resampling, RDE sums,
    harsh events (told to ``on_event`` as _count_harsh does)."""
    t_prev = np.concatenate(([dynamics._prev[0]], t[:-1]))
    v_prev = np.concatenate(([dynamics._prev[1]], v[:-1]))
    first = dynamics._next_grid
    count = int(np.floor(t[-1]) - first) + 1 if t[-1] >= first else 0
    grid = first + np.arange(count, dtype=np.float64)
    at = np.searchsorted(t, grid, side="left")
    t0, v0 = t_prev[at], v_prev[at]
    speeds = v0 + (v[at] - v0) * (grid - t0) / (t[at] - t0)
    dynamics._next_grid = first + count
    dynamics._prev = (float(t[-1]), float(v[-1]))
    window = np.concatenate((np.array(dynamics._window, dtype=np.float64), speeds))
    if len(window) >= 3:
        accel = (window[2:] - window[:-2]) / (2 * k.KMH_PER_MS)
        v_ms = window[1:-1] / k.KMH_PER_MS
        dynamics.distance_m = _sum_in_order(dynamics.distance_m, v_ms)
        positive = accel > RDE_POSITIVE_ACCEL_MS2
        va = v_ms[positive] * accel[positive]
        dynamics.va_pos_sum_m2_s2 = _sum_in_order(dynamics.va_pos_sum_m2_s2, va)
        dynamics.va_pos_bins.update(Counter((va / VA_BIN_M2_S3).astype(np.int64).tolist()))
        settings = dynamics.settings
        accel_starts, dynamics._accel_armed = _episodes(dynamics._accel_armed, accel >= settings.harsh_accel_ms2)
        brake_starts, dynamics._brake_armed = _episodes(dynamics._brake_armed, accel <= -settings.harsh_brake_ms2)
        dynamics.harsh_accel_events += len(accel_starts)
        dynamics.harsh_brake_events += len(brake_starts)
        if dynamics.on_event is not None and (len(accel_starts) or len(brake_starts)):
            # window[j + 1] is the speed at grid[j + 2 - len(old window)] - 1 s: the middle of accel[j]'s three
            events = sorted([(j, "harsh_accel") for j in accel_starts.tolist()]
                            + [(j, "harsh_brake") for j in brake_starts.tolist()])
            old = len(window) - len(speeds)
            for j, kind in events:
                dynamics._event(kind, float(grid[j + 2 - old]) - 1.0, float(window[j + 1]), float(accel[j]))
    dynamics._window = window[-2:].tolist()


def _episodes(armed: bool, over: np.ndarray) -> tuple[np.ndarray, bool]:
    """Where runs of threshold crossings start while armed (one event each; re-armed below the threshold, as
    Dynamics._count_harsh does) and whether it is armed after them."""
    armed_before = np.concatenate(([armed], ~over[:-1]))
    return np.flatnonzero(over & armed_before), not bool(over[-1])


def _add_speeds(trip: Trip, t: np.ndarray, v: np.ndarray, running: np.ndarray) -> None:
    """Trip.add_speed for each sample in order (no gap among them and after the trip's last speed sample)."""
    top = float(v.max())
    current = trip.max_speed_kmh if trip.max_speed_kmh is not None else float(v[0])
    trip.max_speed_kmh = float(v[np.argmax(v == top)]) if top > current else current  # max() keeps the first
    standing = v < STANDING_BELOW_KMH
    trip.stops += int((standing & ~np.concatenate(([trip._standing], standing[:-1]))).sum())
    trip._standing = bool(standing[-1])
    _add_dynamics(trip.dynamics, t, v)
    valid, gap, dt, _, area = _intervals(trip.speed.last, t, v, trip.settings.max_gap_s)
    trip.speed.gaps += int(gap.sum())
    trip.speed.last = (float(t[-1]), float(v[-1]))
    dt, area, running = dt[valid], area[valid], running[valid]
    km = area / k.S_PER_H
    mean_kmh = area / dt
    trip.distance_km = _sum_in_order(trip.distance_km, km)
    band, domain = _bands(mean_kmh), _domains(mean_kmh, trip.settings)
    _sum_by_key(trip.band_time_s, band, dt, _BANDS)
    _sum_by_key(trip.band_km, band, km, _BANDS)
    _sum_by_key(trip.domain_time_s, domain, dt, list(SPEED_DOMAINS))
    _sum_by_key(trip.domain_km, domain, km, list(SPEED_DOMAINS))
    moving = mean_kmh >= STANDING_BELOW_KMH
    trip.moving_time_s = _sum_in_order(trip.moving_time_s, dt[moving])
    trip.idle_time_s = _sum_in_order(trip.idle_time_s, dt[~moving & running])


@dataclass
class Stretch:
    """The accepted samples of a fast-forwarded stretch, in the order the per-sample path feeds them."""

    quantities: list[str]  # qid -> name
    t: np.ndarray
    qid: np.ndarray
    value: np.ndarray
    #: fuel source -> (positions of its input samples, the tracker's latest L/h after each): what
    #: ``TripTracker.fuel_rate_lph`` answered along the stretch.
    fuel_lph: dict[str, tuple[np.ndarray, np.ndarray]]
    fuel_lph_before: dict[str, float]  # the tracker's latest L/h per source before the stretch

    def fuel_rate_lph(self, positions: np.ndarray) -> list[tuple[str, float] | None]:
        """``TripTracker.fuel_rate_lph()`` as it answered right after each of these samples."""
        answers: list[tuple[str, float] | None] = [None] * len(positions)
        for source in reversed(FUEL_SOURCES):  # worst first: a better source's estimate replaces it
            before = self.fuel_lph_before.get(source)
            values = [before] * len(positions)
            if source in self.fuel_lph:
                at, lph = self.fuel_lph[source]
                last = np.searchsorted(at, positions, side="right") - 1
                values = [value if j >= 0 else before
                          for j, value in zip(last.tolist(), lph[np.maximum(last, 0)].tolist())]
            answers = [(source, value) if value is not None else answer for answer, value in zip(answers, values)]
        return answers


class FastForward:
    """Applies steady stretches of a block's samples to the pipeline's tracker and its open trip."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.state, self.tracker = pipeline.state, pipeline.tracker
        self.settings: AnalyticsSettings = pipeline.tracker.settings
        self.applied_samples = 0  # how much of the replay went this way (the tests check it is most of it)

    @staticmethod
    def usable(pipeline) -> bool:
        """When nothing watches single frames and every sample listener also takes stretches (``stats``,
        ``replay`` and ``report`` without raw signals)."""
        owners = [getattr(listener, "__self__", None) for listener in pipeline.sample_listeners]
        return not pipeline.frame_listeners and all(
            any(owner is listener for listener in pipeline.stretch_listeners) for owner in owners)

    def due_t(self) -> float | None:
        """The first frame time from which a listener needs samples one by one (None: no such time)."""
        due = [t for listener in self.pipeline.stretch_listeners if (t := listener.due_t()) is not None]
        return min(due) if due else None

    # -- where stretches must stop -----------------------------------------------------------------------
    def breaks(self, samples: BlockSamples) -> np.ndarray:
        """Accepted samples the per-frame path must take: anything that may start, end or reset something."""
        acc = np.flatnonzero(samples.accepted)
        t, v, qid = samples.t[acc], samples.value[acc], samples.qid[acc]
        names = samples.quantities
        out = np.isnan(v)
        out[1:] |= np.diff(t) > self.settings.trip_gap_s
        if "ignition" in names:
            out |= (qid == names.index("ignition")) & ~(v > 0)
        engine_inputs = np.isin(qid, [names.index(q) for q in ENGINE_OFF_INPUTS if q in names])
        rpm, _ = samples.latest("engine_rpm", acc, self.state)
        speed, _ = samples.latest("speed_kmh", acc, self.state)
        rpm_now = np.where(np.isnan(rpm), 1.0, rpm)  # values.get("engine_rpm", 1.0)
        speed_now = np.where(np.isnan(speed), 0.0, speed)
        out |= engine_inputs & (rpm_now <= 0) & (speed_now < STANDING_BELOW_KMH)
        for q in np.flatnonzero(np.bincount(qid, minlength=len(names))).tolist():  # a first value changes the rules
            if names[q] not in self.state.values:
                out[np.argmax(qid == q)] = True
        if "speed_kmh" in names:
            is_speed = np.flatnonzero(qid == names.index("speed_kmh"))
            dt = np.diff(t[is_speed])
            out[is_speed[1:]] |= (dt <= 0) | (dt > self.settings.max_gap_s)
        flags = np.zeros(len(samples), dtype=bool)
        flags[acc] = out
        return flags

    def can_start(self, samples: BlockSamples, lo: int, hi: int) -> int:
        """Index of the first sample in [lo, hi) whose relation to the trip so far needs the per-frame path,
        or hi: no open trip, engine-off pending, a trip gap, a speed gap after the trip's last speed sample."""
        tracker, trip = self.tracker, self.tracker.trip
        acc = lo + np.flatnonzero(samples.accepted[lo:hi])
        if not len(acc):
            return hi
        if trip is None or tracker._engine_off_since is not None:
            return int(acc[0])
        if samples.t[acc[0]] - trip.last_t > self.settings.trip_gap_s:
            return int(acc[0])
        if "speed_kmh" in samples.quantities:
            speed = acc[samples.qid[acc] == samples.quantities.index("speed_kmh")]
            if len(speed):
                last = trip.speed.last
                dt = samples.t[speed[0]] - last[0] if last is not None else np.nan
                if trip.dynamics._prev is None or not 0 < dt <= self.settings.max_gap_s:
                    return int(speed[0])
        return hi

    # -- applying a stretch ------------------------------------------------------------------------------
    def apply(self, samples: BlockSamples, lo: int, hi: int) -> Stretch | None:
        """Feed accepted samples[lo:hi] (whole frames; no break among them, checked by the caller)."""
        acc = lo + np.flatnonzero(samples.accepted[lo:hi])
        if not len(acc):
            return None
        trip, names = self.tracker.trip, samples.quantities
        t, v, qid = samples.t[acc], samples.value[acc], samples.qid[acc]
        rpm, _ = samples.latest("engine_rpm", acc, self.state)
        running = np.where(np.isnan(rpm), 1.0, rpm) > 0  # TripTracker._engine_running
        speed, _ = samples.latest("speed_kmh", acc, self.state)
        speed = np.where(np.isnan(speed), 0.0, speed)

        def of(quantity: str) -> np.ndarray:
            return np.flatnonzero(qid == names.index(quantity)) if quantity in names else np.zeros(0, dtype=int)

        ends = []
        if len(s := of("speed_kmh")):
            _add_speeds(trip, t[s], v[s], running[s])
            ends.append(s)
        if len(r := of("engine_rpm")) and len(r := r[v[r] > 0]):
            ends.append(r)
        if ends:
            trip.end = max(trip.end, *(float(t[i].max()) for i in ends))
        if len(o := of("odometer_km")):
            if trip.odometer_first_km is None:
                trip.odometer_first_km = float(v[o[0]])
            trip.odometer_last_km = float(v[o[-1]])
        if len(c := of("soc_pct")):
            if trip.soc_first_pct is None:
                trip.soc_first_pct = float(v[c[0]])
            trip.soc_last_pct = float(v[c[-1]])
        if len(b := of("battery_a")) and "battery_v" in self.state.values:
            volts, _ = samples.latest("battery_v", acc[b], self.state)
            if trip.energy is None:
                trip.energy = RateTally(self.settings.max_gap_s)
            _add_rates(trip.energy, t[b], -volts * v[b] / 1000.0, _bands(speed[b]),
                       _domains(speed[b], self.settings), speed[b] < STANDING_BELOW_KMH, self.settings.max_gap_s)
        stretch = Stretch(names, t, qid, v, {}, dict(self.tracker.latest_fuel_lph))
        for source, rows, rates in self._fuel(samples, acc, qid, v, rpm):
            correction = trip.fuel_corrections.get(source, 1.0)
            stretch.fuel_lph[source] = (rows, rates * correction)
            self.tracker.latest_fuel_lph[source] = float(rates[-1]) * correction
            tally = trip.fuel.get(source)
            if tally is None:
                tally = trip.fuel[source] = RateTally(self.settings.max_gap_s)
            _add_rates(tally, t[rows], rates * correction, _bands(speed[rows]), _domains(speed[rows], self.settings),
                       running[rows] & (speed[rows] < STANDING_BELOW_KMH), self.settings.max_gap_s)
        trip.last_t = max(trip.last_t, float(t.max()))
        self.applied_samples += len(acc)
        return stretch

    def _fuel(self, samples: BlockSamples, acc: np.ndarray, qid: np.ndarray, v: np.ndarray, rpm: np.ndarray):
        """FuelEstimator.estimates for each fuel input sample: (source, sample indices, L/h)."""
        names, state = samples.quantities, self.state
        inputs = {q: np.flatnonzero(qid == names.index(q)) for q in ("fuel_rate_lph", "maf_gps", "map_kpa")
                  if q in names}
        if len(rows := inputs.get("fuel_rate_lph", ())):
            yield "fuel_rate", rows, np.where(0.0 > v[rows], 0.0, v[rows])
        if len(rows := inputs.get("maf_gps", ())):
            context = self._context(samples, acc[rows])
            cut = context.fuel_cut | (np.where(np.isnan(rpm[rows]), 1.0, rpm[rows]) <= 0)
            yield "maf", rows, np.where(cut, 0.0, fuel_lph_from_maf(v[rows], context.lambda_))
        profile = self.tracker.fuel.profile
        if len(rows := inputs.get("map_kpa", ())) and "engine_rpm" in state.values and profile.displacement_l:
            context = self._context(samples, acc[rows])
            iat, has_iat = samples.latest("iat_c", acc[rows], state)
            if not has_iat:
                ambient, has_ambient = samples.latest("ambient_c", acc[rows], state)
                iat = ambient if has_ambient else np.full(len(rows), k.DEFAULT_IAT_C)
            air_gps = maf_gps_speed_density(rpm[rows], v[rows], iat, profile.displacement_l,
                                            profile.volumetric_efficiency)
            rates = fuel_lph_from_maf(air_gps, context.lambda_)
            yield "speed_density", rows, np.where((rpm[rows] <= 0) | context.fuel_cut, 0.0, rates)

    def _context(self, samples: BlockSamples, at: np.ndarray) -> "_FuelContext":
        def latest(quantity: str) -> tuple[np.ndarray, bool]:
            return samples.latest(quantity, at, self.state)

        return _FuelContext(latest, len(at))


class _FuelContext:
    """FuelEstimator.in_fuel_cut / lambda_ on arrays (presence of each input is fixed within a stretch)."""

    def __init__(self, latest, count: int) -> None:
        cut, has_cut = latest("fuel_cut")
        status, has_status = latest("fuel_system_status")
        load, has_load = latest("engine_load_pct")
        throttle, has_throttle = latest("throttle_pct")
        lam, has_lambda = latest("lambda")
        high_load = load >= ENRICHMENT_MIN_LOAD_PCT if has_load else (
            (throttle if has_throttle else np.zeros(count)) >= HIGH_LOAD_THROTTLE_PCT)
        status_cut = (status == STATUS_OPEN_LOOP_LOAD_OR_CUT) if has_status else np.zeros(count, dtype=bool)
        self.fuel_cut = cut >= 0.5 if has_cut else status_cut & ~high_load
        enrich = np.where(status_cut & high_load, k.ENRICHMENT_LAMBDA, 1.0)
        self.lambda_ = np.where(lam > 0, lam, enrich) if has_lambda else enrich
