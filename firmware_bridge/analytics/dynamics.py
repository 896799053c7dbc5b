"""Driving dynamics the way the EU RDE rules define them (Regulation 2017/1151, Annex IIIA).

Speed samples arrive at whatever rate the car or the poller gives; RDE works on 1 Hz data, so the speed is
resampled onto whole seconds by linear interpolation, then a_i = (v_{i+1} − v_{i−1}) / (2·3.6) m/s².
Relative positive acceleration RPA = Σ(Δt·(v·a)_i, a_i > 0.1) / Σ distance, and the 95th percentile of v·a+
(m²/s³) comes from a fixed-resolution histogram: O(1) per sample, bounded memory, mergeable across trips.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from firmware_bridge.analytics.settings import RDE_POSITIVE_ACCEL_MS2, AnalyticsSettings
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

    def add_speed(self, t: float, speed_kmh: float) -> None:
        prev = self._prev
        self._prev = (t, speed_kmh)
        if prev is None or t - prev[0] > self.settings.max_gap_s:
            self._window.clear()  # never difference across a gap
            self._next_grid = math.ceil(t)
            return
        if t <= prev[0]:
            return
        t0, v0 = prev
        while self._next_grid <= t:
            self._on_second(self._next_grid, v0 + (speed_kmh - v0) * (self._next_grid - t0) / (t - t0))
            self._next_grid += 1.0

    def _on_second(self, t: float, speed_kmh: float) -> None:
        window = self._window
        window.append(speed_kmh)
        if len(window) < 3:
            return
        v_prev, v, v_next = window
        del window[0]
        accel = (v_next - v_prev) / (2 * KMH_PER_MS)
        v_ms = v / KMH_PER_MS
        self.distance_m += v_ms
        if accel > RDE_POSITIVE_ACCEL_MS2:
            va = v_ms * accel
            self.va_pos_sum_m2_s2 += va
            self.va_pos_bins[int(va / VA_BIN_M2_S3)] += 1
        self._count_harsh(t - 1.0, v, accel)  # the acceleration belongs to the middle sample

    def _count_harsh(self, t: float, speed_kmh: float, accel: float) -> None:
        """One event per episode: re-armed once the acceleration falls back under the threshold."""
        if accel >= self.settings.harsh_accel_ms2:
            if self._accel_armed:
                self.harsh_accel_events += 1
                self._event("harsh_accel", t, speed_kmh, accel)
            self._accel_armed = False
        else:
            self._accel_armed = True
        if accel <= -self.settings.harsh_brake_ms2:
            if self._brake_armed:
                self.harsh_brake_events += 1
                self._event("harsh_brake", t, speed_kmh, accel)
            self._brake_armed = False
        else:
            self._brake_armed = True

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
