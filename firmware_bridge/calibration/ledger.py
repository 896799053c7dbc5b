"""The calibration ledger: fill-ups and trip summaries in SQLite, so calibration survives restarts.

Why a database of its own next to the spool: the spool forgets what the server acknowledged, while fill-ups and
trips are needed for as long as the car is calibrated. WAL and ``synchronous=FULL`` for the same reason as the
spool: a recorded fill-up survives power loss. One short write per fill-up or trip, so SD-card wear is nil.
Trips are stored with the correction they were computed with, so the fit always works on raw estimates.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from firmware_bridge.errors import InputError
from firmware_bridge.localtime import local_text
from firmware_bridge.spool.store import connect

LEDGER_NAME = "ledger.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fillup (
    vehicle TEXT NOT NULL,
    t REAL NOT NULL,                -- Unix seconds
    odometer_km REAL NOT NULL,
    litres REAL NOT NULL,
    price_per_l REAL,
    partial INTEGER NOT NULL,       -- 1: the tank was not filled to the brim
    PRIMARY KEY (vehicle, t)
);
CREATE TABLE IF NOT EXISTS trip (
    vehicle TEXT NOT NULL,
    start_t REAL NOT NULL,
    end_t REAL NOT NULL,
    odometer_start_km REAL,
    odometer_end_km REAL,
    distance_km REAL NOT NULL,
    fuel_l REAL,                    -- as reported: the estimate times fuel_correction
    fuel_source TEXT,
    fuel_correction REAL NOT NULL,  -- 1.0 when the trip was not calibrated
    PRIMARY KEY (vehicle, start_t)
);
"""


@dataclass(frozen=True)
class Fillup:
    t: float
    odometer_km: float
    litres: float
    price_per_l: float | None = None
    partial: bool = False

    @property
    def when(self) -> str:
        return local_text(self.t, seconds=False)


@dataclass(frozen=True)
class TripRecord:
    start_t: float
    end_t: float
    odometer_start_km: float | None
    odometer_end_km: float | None
    distance_km: float
    fuel_l: float | None
    fuel_source: str | None
    fuel_correction: float = 1.0

    @property
    def raw_fuel_l(self) -> float | None:
        """The uncalibrated estimate: what a new fit must start from."""
        return None if self.fuel_l is None else self.fuel_l / self.fuel_correction

    @classmethod
    def from_summary(cls, start_t: float, end_t: float, odometer: tuple[float | None, float | None],
                     summary: dict) -> "TripRecord":
        return cls(start_t, end_t, odometer[0], odometer[1], summary["distance_km"], summary["fuel_used_l"],
                   summary["fuel_source"], summary.get("fuel_correction") or 1.0)


class Ledger:
    """Thread-safe (the agent records trips from its bus thread); one connection guarded by a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = connect(self.path, timeout=10.0)
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"{self.path}: cannot open the calibration ledger: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_fillup(self, vehicle: str, fillup: Fillup) -> None:
        """Record a fill-up; its odometer must fit between the fill-ups recorded before and after it."""
        with self._lock:
            before = self._db.execute("SELECT t, odometer_km FROM fillup WHERE vehicle = ? AND t < ? "
                                      "ORDER BY t DESC LIMIT 1", (vehicle, fillup.t)).fetchone()
            after = self._db.execute("SELECT t, odometer_km FROM fillup WHERE vehicle = ? AND t > ? "
                                     "ORDER BY t LIMIT 1", (vehicle, fillup.t)).fetchone()
            if before and fillup.odometer_km < before[1]:
                raise InputError(f"odometer {fillup.odometer_km:g} km is below the {before[1]:g} km of the earlier "
                                 f"fill-up of {Fillup(before[0], before[1], 0).when}")
            if after and fillup.odometer_km > after[1]:
                raise InputError(f"odometer {fillup.odometer_km:g} km is above the {after[1]:g} km of the later "
                                 f"fill-up of {Fillup(after[0], after[1], 0).when}")
            try:
                with self._db:
                    self._db.execute("INSERT INTO fillup VALUES (?, ?, ?, ?, ?, ?)",
                                     (vehicle, *astuple(fillup)[:4], int(fillup.partial)))
            except sqlite3.IntegrityError:
                raise InputError(f"a fill-up of {fillup.when} is already recorded for {vehicle!r}") from None

    def fillups(self, vehicle: str) -> list[Fillup]:
        """In the order they happened (odometer, then time)."""
        with self._lock:
            rows = self._db.execute("SELECT t, odometer_km, litres, price_per_l, partial FROM fillup "
                                    "WHERE vehicle = ? ORDER BY odometer_km, t", (vehicle,)).fetchall()
        return [Fillup(t, odo, litres, price, bool(partial)) for t, odo, litres, price, partial in rows]

    def add_trip(self, vehicle: str, trip: TripRecord) -> None:
        """Insert or replace (a replayed log rewrites its trips instead of counting them twice)."""
        with self._lock, self._db:
            self._db.execute(f"INSERT OR REPLACE INTO trip VALUES (?{', ?' * len(fields(TripRecord))})",
                             (vehicle, *astuple(trip)))

    def trips(self, vehicle: str) -> list[TripRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(f.name for f in fields(TripRecord))} FROM trip "
                                    "WHERE vehicle = ? ORDER BY start_t", (vehicle,)).fetchall()
        return [TripRecord(*row) for row in rows]
