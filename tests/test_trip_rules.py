"""The trip tracker's rules for what a trip is: fuel alone never starts one, a dropped short trip is reported,
and time going backwards never makes a trip vanish."""

import json
import logging

import pytest

from firmware_bridge.analytics.settings import AnalyticsSettings
from firmware_bridge.analytics.tracker import TripTracker
from firmware_bridge.vehicles import load_vehicle

from conftest import T0, obd_drive, run_cli
from samples import Sample, feed
from test_state_and_trips import drive


def readings(t0, seconds, quantities):
    return [Sample(t0 + i + k / 10, q, v) for i in range(seconds) for k, (q, v) in enumerate(quantities)]


def test_fuel_alone_never_starts_a_trip():
    tracker = TripTracker(AnalyticsSettings(), load_vehicle())
    # what a parked car's ECU (or frames misread as fuel) may give: fuel rate, air flow, manifold pressure
    parked = readings(T0, 300, [("fuel_rate_lph", 0.6), ("maf_gps", 2.0), ("map_kpa", 40.0)])
    assert feed(tracker, parked) == [] and tracker.trip is None
    tracker.close()
    assert tracker.finished == [] and tracker.dropped_short == 0  # not even a trip too short to keep
    feed(tracker, drive(T0 + 400, 120))  # the engine starts: that is a trip
    assert tracker.trip is not None and tracker.trip.start == T0 + 400


def test_a_trip_shorter_than_min_trip_s_is_reported(caplog):
    tracker = TripTracker(AnalyticsSettings(min_trip_s=60), load_vehicle())
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.analytics.tracker"):
        feed(tracker, drive(T0, 30) + [Sample(T0 + 31, "ignition", 0.0)])
    assert tracker.dropped_short == 1 and tracker.finished == []
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == ("a trip of 30 s from 2026-04-01T09:00:00.000Z is shorter than min_trip_s (60 s):"
                                   " dropped (1 so far)")


def test_time_going_backwards_never_makes_a_trip_vanish():
    tracker = TripTracker(AnalyticsSettings(), load_vehicle())
    feed(tracker, drive(T0, 600) + drive(T0 - 1000, 600))  # the clock jumps back 1600 s mid-drive
    trip = tracker.close()
    assert trip is not None and tracker.finished == [trip]
    assert trip.start == T0 and trip.end == pytest.approx(T0 + 599.5)
    assert trip.distance_km == pytest.approx(30 * 1198.5 / 3600, rel=0.01)  # both halves, not the jump


def test_a_log_whose_clock_steps_back_keeps_its_trip(tmp_path, trapezoid_drive):
    frames = obd_drive(trapezoid_drive)
    half = len(frames) // 2
    for msg in frames[half:]:  # e.g. the logger's clock set back by NTP after the first half
        msg.timestamp -= 3600.0
    # written by hand: python-can's candump writer would hold the time at the first frame's instead
    (tmp_path / "back.log").write_text("".join(
        f"({m.timestamp:.6f}) can0 {m.arbitration_id:03X}#{bytes(m.data).hex().upper()}\n" for m in frames))
    result = run_cli("stats", tmp_path / "back.log", "--format", "json")
    assert result.returncode == 0, result.stderr
    trips = json.loads(result.stdout)["trips"]
    assert trips and sum(t["distance_km"] for t in trips) == pytest.approx(3.0, rel=0.02)
