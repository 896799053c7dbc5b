"""Time sources: the wall clock on a real car, a simulated clock for the simulator, the demo and the tests.

The agent stamps and paces everything by a clock: ``now()`` (Unix seconds) and ``wait(event, timeout_s)`` (an
``Event.wait`` measured in the clock's seconds). On a real car that is the wall clock. The simulator, its ECU,
the OBD-II poller and the agent share a ``SimClock`` instead: time moves only when the loop that drives them has
delivered every frame due, so a drive gives the same figures however busy the machine is.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


class RealClock:
    """Wall-clock time (Unix seconds) and real waits."""

    speedup = 1.0

    def now(self) -> float:
        return time.time()

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        return event.wait(max(timeout_s, 0.0))

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ScaledClock:
    """Car time running ``speedup`` times faster than the wall clock, starting at ``start`` (Unix seconds).

    Threads paced by it fall behind on a loaded machine; a ``SimClock`` never does.
    """

    def __init__(self, speedup: float, start: float | None = None) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.speedup = float(speedup)
        self._start = time.time() if start is None else float(start)
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._origin) * self.speedup

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        return event.wait(max(timeout_s, 0.0) / self.speedup)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speedup)


#: How often a parked thread looks at its event for a set from outside the loop (a stop request), wall seconds.
_PARKED_POLL_S = 0.05
#: After ``close``, waits last this much longer (wall seconds), so a helper whose time ran out at the close is
#: told to stop before it acts on the timeout (the owner stops it right after closing the clock).
_CLOSED_GRACE_S = 0.5
#: Longest a thread may run between two waits before the loop gives up on it (it died, or never started).
_THREAD_RETURN_S = 30.0


@dataclass(eq=False)
class _Parked:
    event: threading.Event
    deadline_s: float
    released: bool = False


class SimClock:
    """Simulated time for one loop and ``threads`` helper threads (the OBD-II poller) that wait on it.

    A helper's ``wait`` parks it until its event is set or the simulated time reaches its timeout; the loop
    ``advance``s time only to the next thing due and ``settle``s (runs every helper that can run, one at a
    time, until all are parked again) before it delivers frames or moves on. Helpers and loop therefore take
    turns, and the order of events is fixed by simulated time alone. After ``close`` the clock stands still and
    waits are real ones, so helpers can be stopped.
    """

    speedup = math.inf  # as fast as the machine allows

    def __init__(self, start_s: float = 0.0, threads: int = 0) -> None:
        self._t_s = float(start_s)
        self._threads = threads
        self._cond = threading.Condition()
        self._parked: list[_Parked] = []
        self._helpers: set[threading.Thread] = set()  # threads seen waiting: one that has ended is not awaited
        self._closed = False

    def now(self) -> float:
        return self._t_s

    # -- helper threads ---------------------------------------------------------------------------------
    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        """Park until ``event`` is set (True) or ``timeout_s`` of simulated time has passed (False)."""
        with self._cond:
            if not self._closed:
                parked = _Parked(event, self._t_s + max(timeout_s, 0.0))
                self._parked.append(parked)
                self._helpers.add(threading.current_thread())
                self._cond.notify_all()
                while not parked.released and not self._closed:
                    self._cond.wait(_PARKED_POLL_S)
                    if event.is_set() and not parked.released:  # set outside the loop: e.g. a stop request
                        self._parked.remove(parked)
                        break
                if parked.released:
                    return event.is_set()
        return event.wait(max(timeout_s, 0.0) + _CLOSED_GRACE_S)

    def sleep(self, seconds: float) -> None:
        self.wait(threading.Event(), seconds)

    # -- the loop ---------------------------------------------------------------------------------------
    def next_wake_s(self) -> float:
        """When the earliest parked helper times out (inf if none waits with a timeout)."""
        with self._cond:
            return min((p.deadline_s for p in self._parked), default=math.inf)

    def advance(self, t_s: float) -> None:
        """Move simulated time forward to ``t_s`` (never back); ``settle`` then lets due helpers run."""
        if t_s > self._t_s:
            self._t_s = t_s

    def settle(self) -> None:
        """Run each helper whose event is set or whose timeout has come, one at a time, until all are parked."""
        with self._cond:
            while True:
                self._await_parked()
                ready = [p for p in self._parked if p.event.is_set() or p.deadline_s <= self._t_s]
                if not ready:
                    return
                first = min(ready, key=lambda p: p.deadline_s)
                self._parked.remove(first)
                first.released = True
                self._cond.notify_all()

    def _await_parked(self) -> None:
        given_up_at = time.monotonic() + _THREAD_RETURN_S
        while len(self._parked) < self._threads - sum(not t.is_alive() for t in self._helpers):
            self._cond.wait(_PARKED_POLL_S)
            if time.monotonic() >= given_up_at:
                raise RuntimeError(f"a thread on the simulated clock did not come back within {_THREAD_RETURN_S:g} s"
                                   " of wall time (it hangs or never started)")

    def close(self) -> None:
        """Stop simulated time: every helper is released and later waits are real ones (a little longer than
        asked, so the owner's stop request comes first); the owner then stops its helpers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
