"""Calibration in a running agent: corrections from the ledger applied to new trips, finished trips recorded.

Attached by the commands that drive a real car's data (``run``, ``replay``; ``stats`` reads only), never by
``demo``: a simulated car must not calibrate yours. After each trip the fit is redone, so a fill-up recorded
with ``firmware-bridge fillup`` while the agent runs applies from the next trip on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from firmware_bridge.calibration.fit import Correction, Interval, fit, intervals
from firmware_bridge.calibration.ledger import LEDGER_NAME, Ledger, TripRecord
from firmware_bridge.calibration.points import calibration_points, fillup_point
from firmware_bridge.records import Point


def ledger_path(config: dict) -> Path:
    from firmware_bridge.sinks.outputs import default_state_dir

    return Path(config["calibration"]["ledger"] or default_state_dir() / LEDGER_NAME)


class CalibrationRecorder:
    def __init__(self, pipeline, ledger: Ledger, vehicle_id: str, min_intervals: int,
                 emit: Callable[[Point], None] | None = None, record: bool = True) -> None:
        self.pipeline, self.ledger, self.vehicle_id = pipeline, ledger, vehicle_id
        self.min_intervals, self.emit, self.record = min_intervals, emit, record
        self.intervals: list[Interval] = []
        self.corrections: dict[str, Correction] = {}
        if record:
            pipeline.trip_listeners.append(self.on_trip)
        self.refresh()
        if emit is not None:
            for fillup in ledger.fillups(vehicle_id):
                emit(fillup_point(fillup, vehicle_id))

    def refresh(self) -> None:
        """Refit from the ledger and hand the corrections to the trip tracker (new trips take them)."""
        self.intervals = intervals(self.ledger.fillups(self.vehicle_id), self.ledger.trips(self.vehicle_id))
        self.corrections = fit(self.intervals, self.min_intervals)
        tracker = self.pipeline.tracker
        tracker.fuel_corrections.clear()
        tracker.fuel_corrections.update({source: c.factor for source, c in self.corrections.items()})
        if self.emit is not None:
            for point in calibration_points(self.intervals, self.vehicle_id, self.min_intervals,
                                            self.pipeline.profile.volumetric_efficiency):
                self.emit(point)

    def on_trip(self, trip) -> None:
        self.ledger.add_trip(self.vehicle_id, TripRecord.from_summary(
            trip.start, trip.end, (trip.odometer_first_km, trip.odometer_last_km), trip.summary()))
        self.refresh()


def attach_calibration(pipeline, config: dict, vehicle_id: str, emit: Callable[[Point], None] | None = None,
                       record: bool = True) -> CalibrationRecorder | None:
    """Calibrate ``pipeline`` from the ledger (and record its trips unless ``record`` is False)."""
    settings = config["calibration"]
    if not settings["enabled"]:
        return None
    path = ledger_path(config)
    if not record and not path.exists():
        return None  # reading only, and nothing recorded yet: no file is created
    return CalibrationRecorder(pipeline, Ledger(path), vehicle_id, settings["min_intervals"], emit, record)
