"""The simulated car's own periodic broadcast frames, encoded with cantools from the ``kei-sim``
car's kei_sim.dbc.

Manufacturer-style frames arrive unasked and fast (20-500 ms), next to the slow request/response OBD-II
traffic, so the decoder and the signal map see both kinds of source. Periods come from the DBC's
GenMsgCycleTime attribute: the DBC is the one description of the layout and timing. The layout is the
SIMULATOR'S, not a real car's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import can
import cantools

from firmware_bridge.vehicles import bundled_folder
from firmware_bridge.sim.car import CarState

#: The simulated car's broadcast frames: a DBC made up for the simulator, in the ``kei-sim`` car's folder.
SIM_DBC_PATH = bundled_folder("kei-sim") / "kei_sim.dbc"

#: Which CarState attribute feeds each DBC signal, per message (booleans are sent as 0/1).
_SIGNAL_SOURCES: dict[str, dict[str, str]] = {
    "SIM_ENGINE": {
        "engine_speed_rpm": "engine_rpm",
        "throttle_position_pct": "throttle_pct",
        "intake_map_kpa": "map_kpa",
        "intake_air_temp_c": "iat_c",
        "fuel_cut_active": "fuel_cut",
    },
    "SIM_SPEED": {"vehicle_speed_kmh": "speed_kmh"},
    "SIM_FUEL": {"fuel_rate_lph": "fuel_rate_lph", "fuel_level_pct": "fuel_level_pct"},
    "SIM_BODY": {
        "odometer_km": "odometer_km",
        "coolant_temp_c": "coolant_c",
        "ignition_on": "ignition",
        "battery_voltage_v": "battery_v",
    },
}

#: Messages are staggered by this much so frames of one tick do not share a timestamp, as on a real bus.
_STAGGER_S = 0.002
#: Tolerance for comparing due times computed as phase + k * period.
_TIME_EPS_S = 1e-9


@dataclass(frozen=True)
class BroadcastFrame:
    """One periodic message: its DBC definition, period, phase and where its signal values come from."""

    message: cantools.database.Message
    period_s: float
    phase_s: float
    sources: dict[str, str]

    def encode(self, state: CarState) -> bytes:
        """Signal values from the state, clamped to the DBC range (cantools rounds to the nearest step)."""
        values = {}
        for signal in self.message.signals:
            value = float(getattr(state, self.sources[signal.name]))
            values[signal.name] = min(max(value, signal.minimum), signal.maximum)
        return self.message.encode(values, strict=False)


class BroadcastSchedule:
    """When each broadcast frame is due (drive time, seconds) and its bytes for a given state."""

    def __init__(self, dbc_path: str | Path | None = None, signal_sources: dict[str, dict[str, str]] | None = None,
                 ) -> None:
        """The simulator's own frames by default; or another DBC with its message -> signal -> state map."""
        database = cantools.database.load_file(str(dbc_path or SIM_DBC_PATH))
        frames = []
        for index, (name, sources) in enumerate((signal_sources or _SIGNAL_SOURCES).items()):
            message = database.get_message_by_name(name)
            if not message.cycle_time:
                raise ValueError(f"{name}: no GenMsgCycleTime in the DBC")
            frames.append(BroadcastFrame(message, message.cycle_time / 1000.0, index * _STAGGER_S, sources))
        self.frames: tuple[BroadcastFrame, ...] = tuple(frames)
        self._sent_counts = [0] * len(self.frames)

    def __iter__(self) -> Iterator[tuple[float, Callable[[CarState], bytes]]]:
        """(period_s, encoder) for each message."""
        return iter([(frame.period_s, frame.encode) for frame in self.frames])

    def _due_s(self, index: int) -> float:
        frame = self.frames[index]
        return frame.phase_s + self._sent_counts[index] * frame.period_s

    def next_due_s(self) -> float:
        """Drive time of the next frame due."""
        return min(self._due_s(index) for index in range(len(self.frames)))

    def frames_due(self, t_s: float, state: CarState, timestamp: float | None = None) -> list[can.Message]:
        """Frames due at or before t_s, once each: a late caller gets the latest frame, not a burst of stale ones.

        Nothing is sent while the ignition is off (the schedule still moves on). Messages are stamped with
        `timestamp` (e.g. Unix car time), t_s when not given.
        """
        out: list[can.Message] = []
        for index, frame in enumerate(self.frames):
            if self._due_s(index) > t_s + _TIME_EPS_S:
                continue
            periods_elapsed = math.floor((t_s - frame.phase_s) / frame.period_s + _TIME_EPS_S)
            self._sent_counts[index] = periods_elapsed + 1
            if state.ignition:
                out.append(
                    can.Message(
                        timestamp=t_s if timestamp is None else timestamp,
                        arbitration_id=frame.message.frame_id,
                        is_extended_id=False,
                        data=frame.encode(state),
                    )
                )
        return out
