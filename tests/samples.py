"""Hand-made samples for the vehicle state, the trip tracker and the fuel estimates.

A sample is given as (time, quantity, value); each becomes a frame of a message named after nothing but the
test, routed to its quantity, so the samples go through the real vehicle state into a SampleBlock.
"""

from __future__ import annotations

from typing import NamedTuple

from firmware_bridge.records import DecodedFrame
from firmware_bridge.state.vehicle import VehicleState

#: Every quantity a hand-made sample may name.
QUANTITIES = ("engine_rpm", "speed_kmh", "ignition", "fuel_rate_lph", "maf_gps", "map_kpa", "iat_c", "ambient_c",
              "fuel_system_status", "engine_load_pct", "throttle_pct", "lambda", "fuel_cut", "lat", "lon",
              "gps_speed_kmh", "battery_v", "battery_a", "soc_pct", "odometer_km", "coolant_c")


class Sample(NamedTuple):
    t: float
    quantity: str
    value: float


def hand_state() -> VehicleState:
    return VehicleState({q: [f"HAND.{q}"] for q in QUANTITIES})


def frames_of(samples) -> list[DecodedFrame]:
    return [DecodedFrame(s.t, 0, "HAND", {s.quantity: s.value}) for s in samples]


def feed(tracker, samples, block: int | None = None, state: VehicleState | None = None) -> list:
    """The samples through a vehicle state into the tracker, ``block`` at a time (None: all at once); returns
    the trips closed."""
    state = state or hand_state()
    frames, closed = frames_of(samples), []
    block = block or max(len(frames), 1)
    for lo in range(0, len(frames), block):
        sample_block = state.accept_frames(frames[lo:lo + block])
        tracker.feed(sample_block, lambda segment: None, closed.append)
    return closed
