"""A deterministic kei-car simulator with its own ground truth: drive cycles, physics, OBD-II ECU, broadcast.

It feeds the pipeline exactly as a real car would (python-can frames, live or as a log), and knows the true
distance and fuel, so every estimate the agent makes can be checked against what really happened.
"""

from firmware_bridge.sim.broadcast import SIM_DBC_PATH, BroadcastSchedule, SeededLayout, seeded_layout
from firmware_bridge.sim.car import CarConfig, CarState, GroundTruth, KeiCar
from firmware_bridge.sim.cycles import CYCLE_NAMES, Cycle, load_cycle
from firmware_bridge.sim.ev import ElectricKeiCar, EvConfig, EvState, EvTruth
from firmware_bridge.sim.obd import PID_SETS, ObdResponder, encode_response
from firmware_bridge.sim.runner import SimulatedCar, generate_frames, write_log

__all__ = [
    "CYCLE_NAMES",
    "PID_SETS",
    "SIM_DBC_PATH",
    "BroadcastSchedule",
    "CarConfig",
    "CarState",
    "Cycle",
    "ElectricKeiCar",
    "EvConfig",
    "EvState",
    "EvTruth",
    "GroundTruth",
    "KeiCar",
    "ObdResponder",
    "SeededLayout",
    "SimulatedCar",
    "encode_response",
    "generate_frames",
    "load_cycle",
    "seeded_layout",
    "write_log",
]
