"""Standard drive cycles as 1 Hz speed traces, the simulator's only input.

A cycle is a fixed speed-versus-time trace, so every simulated drive (and its ground truth) is reproducible.
Traces are package data read through importlib.resources, so they work from an installed wheel too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

from firmware_bridge.constants import S_PER_H

#: WLTC class 3b trace: UN GTR No. 15 Annex 1, values from the `wltp` package (EUPL 1.1, see the CSV header).
_WLTC_CSV = "wltc_class3b.csv"

#: End of the WLTC High phase: Japan's catalog WLTC is Low + Medium + High, without Extra-high (MLIT type approval).
_WLTC_JP_END_S = 1477

CYCLE_NAMES = ("wltc", "wltc-jp")


@dataclass(frozen=True)
class Cycle:
    """A speed trace sampled at 1 Hz from t = 0 s; linear between samples, so distances are exact trapezoids."""

    name: str
    speeds_kmh: tuple[float, ...]

    @property
    def duration_s(self) -> float:
        return float(len(self.speeds_kmh) - 1)

    def speed_kmh_at(self, t_s: float) -> float:
        """Linear interpolation of the trace; 0 before the start and after the end (the car stands still)."""
        if t_s < 0.0 or t_s > self.duration_s:
            return 0.0
        i = min(int(math.floor(t_s)), len(self.speeds_kmh) - 2)
        frac = t_s - i
        v0, v1 = self.speeds_kmh[i], self.speeds_kmh[i + 1]
        return v0 + (v1 - v0) * frac

    @property
    def distance_km(self) -> float:
        """Exact distance of the piecewise-linear trace (trapezoid rule at 1 s steps)."""
        v = self.speeds_kmh
        total_kmh_s = math.fsum(v) - 0.5 * (v[0] + v[-1])
        return total_kmh_s / S_PER_H


def _read_trace_kmh(filename: str) -> tuple[float, ...]:
    """Read a `time_s,speed_kmh` CSV (comments start with #) and check it is a gap-free 1 Hz trace from 0 s."""
    text = resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")
    speeds_kmh: list[float] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("time_s"):
            continue
        time_text, speed_text = line.split(",")
        if int(float(time_text)) != len(speeds_kmh):
            raise ValueError(f"{filename}: expected t={len(speeds_kmh)} s, got {time_text}")
        speeds_kmh.append(float(speed_text))
    return tuple(speeds_kmh)


def load_cycle(name: str) -> Cycle:
    """The named cycle: "wltc" (class 3b, 1800 s) or "wltc-jp" (Low+Medium+High, 1477 s)."""
    if name not in CYCLE_NAMES:
        raise ValueError(f"unknown cycle {name!r}; known cycles: {', '.join(CYCLE_NAMES)}")
    speeds_kmh = _read_trace_kmh(_WLTC_CSV)
    if name == "wltc-jp":
        speeds_kmh = speeds_kmh[: _WLTC_JP_END_S + 1]
    return Cycle(name=name, speeds_kmh=speeds_kmh)


__all__ = ["CYCLE_NAMES", "Cycle", "load_cycle"]
