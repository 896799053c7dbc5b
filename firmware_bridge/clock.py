"""Time sources for live operation.

The agent stamps and paces everything by a clock. On a real car that is the wall clock; the simulator and the
demo run a kei car faster than real time, so they share a scaled clock with the poller: rate caps and timeouts
then hold in the car's time, and frame timestamps are the car's time too.
"""

from __future__ import annotations

import time


class RealClock:
    """Wall-clock time (Unix seconds) and real sleeps."""

    speedup = 1.0

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ScaledClock:
    """Car time running ``speedup`` times faster than the wall clock, starting at ``start`` (Unix seconds)."""

    def __init__(self, speedup: float, start: float | None = None) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.speedup = float(speedup)
        self._start = time.time() if start is None else float(start)
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._origin) * self.speedup

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speedup)
