"""Driving dynamics the way the EU RDE rules define them (Regulation 2017/1151, Annex IIIA).

Speed samples arrive at whatever rate the car or the poller gives; RDE works on 1 Hz data, so the speed is
resampled onto whole seconds by linear interpolation, then a_i = (v_{i+1} − v_{i−1}) / (2·3.6) m/s².
Relative positive acceleration RPA = Σ(Δt·(v·a)_i, a_i > 0.1) / Σ distance, and the 95th percentile of v·a+
(m²/s³) comes from a fixed-resolution histogram: bounded memory, mergeable across trips. Samples arrive as
arrays; the resampling and the sums carry their state, so any cut of a drive into blocks gives the same figures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np

from firmware_bridge.analytics.settings import RDE_POSITIVE_ACCEL_MS2, AnalyticsSettings
from firmware_bridge.analytics.sums import sum_in_order
from firmware_bridge.constants import KMH_PER_MS

#: Receives (kind, time, fields) for harsh_accel / harsh_brake / gap events.
EventCallback = Callable[[str, float, dict], None]

#: v·a histogram resolution, m²/s³ (RDE limits are tens of m²/s³).
VA_BIN_M2_S3 = 0.01


class Dynamics:
    def __init__(self, settings: AnalyticsSettings, on_event: EventCallback | None = None) -> None:
        self.settings = settings
        self.on_event = on_event
        self._prev: tuple[float, float] | None = None
        self._next_grid = 0.0
        self._window: list[float] = []  # the last three 1 Hz speeds, km/h
        self.distance_m = 0.0
        self.va_pos_sum_m2_s2 = 0.0
        self.va_pos_bins: Counter[int] = Counter()
        self.harsh_accel_events = 0
        self.harsh_brake_events = 0
        self._accel_armed = self._brake_armed = True

    def add_speeds(self, t: np.ndarray, speed_kmh: np.ndarray) -> None:
        """Speed samples in order. A gap (or the first sample) restarts the resampling; a sample at or before
        the previous one's time adds no second."""
        prev_t = np.concatenate(([self._prev[0] if self._prev is not None else np.nan], t[:-1]))
        restart = np.isnan(prev_t) | (t - prev_t > self.settings.max_gap_s)
        cuts = np.flatnonzero(restart | (t <= prev_t))
        start = 0
        for cut in cuts.tolist():  # rare: a trip's first speed, gaps, time going back
            self._resample(t[start:cut], speed_kmh[start:cut])
            if restart[cut]:
                self._window.clear()  # never difference across a gap
                self._next_grid = math.ceil(t[cut])
            self._prev = (float(t[cut]), float(speed_kmh[cut]))
            start = cut + 1
        self._resample(t[start:], speed_kmh[start:])

    def _resample(self, t: np.ndarray, v: np.ndarray) -> None:
        """Samples closely following the previous one, times increasing: the whole seconds they reach, by
        linear interpolation, each then goes through the RDE window."""
        if not len(t):
            return
        t_prev = np.concatenate(([self._prev[0]], t[:-1]))
        v_prev = np.concatenate(([self._prev[1]], v[:-1]))
        first = self._next_grid
        count = int(np.floor(t[-1]) - first) + 1 if t[-1] >= first else 0
        grid = first + np.arange(count, dtype=np.float64)
        at = np.searchsorted(t, grid, side="left")  # the sample each second is reached at
        t0, v0 = t_prev[at], v_prev[at]
        self._next_grid = first + count
        self._prev = (float(t[-1]), float(v[-1]))
        self._on_seconds(grid, v0 + (v[at] - v0) * (grid - t0) / (t[at] - t0))

    def _on_seconds(self, grid: np.ndarray, speeds_kmh: np.ndarray) -> None:
        """1 Hz speeds: a_i = (v_{i+1} - v_{i-1}) / (2·3.6) belongs to the middle one."""
        window = np.concatenate((np.array(self._window, dtype=np.float64), speeds_kmh))
        old = len(self._window)
        self._window = window[-2:].tolist()
        if len(window) < 3:
            return
        accel = (window[2:] - window[:-2]) / (2 * KMH_PER_MS)
        v_ms = window[1:-1] / KMH_PER_MS
        self.distance_m = sum_in_order(self.distance_m, v_ms)
        positive = accel > RDE_POSITIVE_ACCEL_MS2
        va = v_ms[positive] * accel[positive]
        self.va_pos_sum_m2_s2 = sum_in_order(self.va_pos_sum_m2_s2, va)
        self.va_pos_bins.update(Counter((va / VA_BIN_M2_S3).astype(np.int64).tolist()))
        accel_starts, self._accel_armed = _episodes(self._accel_armed, accel >= self.settings.harsh_accel_ms2)
        brake_starts, self._brake_armed = _episodes(self._brake_armed, accel <= -self.settings.harsh_brake_ms2)
        self.harsh_accel_events += len(accel_starts)
        self.harsh_brake_events += len(brake_starts)
        events = sorted([(j, "harsh_accel") for j in accel_starts.tolist()]
                        + [(j, "harsh_brake") for j in brake_starts.tolist()])
        for j, kind in events:  # window[j + 2] is the second grid[j + 2 - old]; accel[j] belongs to the one before
            self._event(kind, float(grid[j + 2 - old]) - 1.0, float(window[j + 1]), float(accel[j]))

    def _event(self, kind: str, t: float, speed_kmh: float, accel: float) -> None:
        if self.on_event is not None:
            self.on_event(kind, t, {"speed_kmh": float(speed_kmh), "accel_ms2": float(accel)})

    def absorb(self, other: "Dynamics") -> None:
        self.distance_m += other.distance_m
        self.va_pos_sum_m2_s2 += other.va_pos_sum_m2_s2
        self.va_pos_bins.update(other.va_pos_bins)
        self.harsh_accel_events += other.harsh_accel_events
        self.harsh_brake_events += other.harsh_brake_events

    @property
    def rpa_m_s2(self) -> float | None:
        return self.va_pos_sum_m2_s2 / self.distance_m if self.distance_m > 0 else None

    @property
    def va_pos_95_m2_s3(self) -> float | None:
        """Nearest-rank 95th percentile of v·a+ (bin centre)."""
        count = sum(self.va_pos_bins.values())
        if not count:
            return None
        rank = math.ceil(0.95 * count)
        seen = 0
        for b in sorted(self.va_pos_bins):
            seen += self.va_pos_bins[b]
            if seen >= rank:
                return (b + 0.5) * VA_BIN_M2_S3
        return None  # unreachable


def _episodes(armed: bool, over: np.ndarray) -> tuple[np.ndarray, bool]:
    """Where runs of threshold crossings start while armed (one event per episode, re-armed once the
    acceleration falls back under the threshold), and whether it is armed after them."""
    armed_before = np.concatenate(([armed], ~over[:-1]))
    return np.flatnonzero(over & armed_before), not bool(over[-1])
