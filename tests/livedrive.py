"""A live drive for tests: the simulated car and the agent's poller on a python-can virtual bus.

The car, its ECU, the poller and the agent share one simulated clock, stepped as fast as the machine allows:
the figures never depend on how loaded the machine is. Every frame on the bus is also recorded to a candump log
by a third bus connection, as a logger plugged into the car would.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import can

from firmware_bridge.clock import SimClock
from firmware_bridge.obd.poller import ObdPoller, PollSettings
from firmware_bridge.pipeline import Pipeline, PipelineOptions
from firmware_bridge.sim import CarConfig, GroundTruth, SimulatedCar
from firmware_bridge.sim.runner import run_on_sim_clock
from firmware_bridge.sinks.outputs import Outputs

_channels = itertools.count()


@dataclass
class LiveDrive:
    pipeline: Pipeline
    poller: ObdPoller | None
    truth: GroundTruth
    log_path: str | None
    outputs: Outputs | None = None  # still open: the caller closes it (and may wait for the sender)


def live_drive(cycle, pid_set="map", record=None, config=None, settings=None,
               start=1775034000.0, options=None, later=None, agent_config=None, during=None,
               poll=True, broadcast=False, car_options=None, poller_options=None) -> LiveDrive:
    """Drive ``cycle``; ``later=(cycle, offset_s)`` brings a second drive of the same car on the bus after a
    silence (the ECU is asleep in between). Ends when the last drive does.

    ``agent_config`` (a firmware_bridge.config dict) adds the agent's sinks (line-protocol file, InfluxDB through
    the spool); ``during(car_time_s)`` is called on every tick, e.g. to stop a server mid-drive. ``poll=False``
    leaves the agent passive (an EV: ``config=EvConfig()`` broadcasts, nobody polls). ``car_options`` go to each
    SimulatedCar (e.g. a 29-bit ``ecu_tx_id``, ``diagnostics``), ``poller_options`` to the ObdPoller."""
    channel = f"test-live-{next(_channels)}"
    clock = SimClock(start, threads=1 if poll else 0)
    agent_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    taps = []
    if record is not None:
        taps.append((can.Bus(interface="virtual", channel=channel, preserve_timestamps=True),
                     can.Logger(str(record))))
    pipeline = Pipeline(options or PipelineOptions())
    values = pipeline.state.values
    poller = ObdPoller(agent_bus, settings or PollSettings(), clock,
                       engine_rpm=lambda: values.get("engine_rpm"),
                       speed_kmh=lambda: values.get("speed_kmh"), **(poller_options or {})) if poll else None
    drives = [(cycle, 0.0)] + ([later] if later else [])
    car_buses = [can.Bus(interface="virtual", channel=channel, preserve_timestamps=True) for _ in drives]
    cars = [SimulatedCar(bus, config or CarConfig(), c, pid_set=pid_set, clock=clock, broadcast=broadcast,
                         start_time=start + offset_s, **(car_options or {}))
            for bus, (c, offset_s) in zip(car_buses, drives)]
    stop = threading.Event()
    outputs = Outputs(pipeline, agent_config, "kei") if agent_config else None

    def until():
        if during is not None:
            during(clock.now() - start)
        if all(car.finished.is_set() for car in cars):
            stop.set()

    listeners = [poller] if poller else []
    for listener in listeners:
        listener.start()
    try:
        run_on_sim_clock(agent_bus, pipeline, clock, stop, listeners, on_tick=until, cars=cars, taps=taps)
    finally:
        for listener in listeners:
            listener.stop()
        for tap_bus, logger in taps:  # the recording ends with the agent's last frame
            while (msg := tap_bus.recv(timeout=0)) is not None:
                logger.on_message_received(msg)
            logger.stop()
            tap_bus.shutdown()
        for bus in (agent_bus, *car_buses):
            bus.shutdown()
    return LiveDrive(pipeline, poller, cars[0].truth, str(record) if record else None, outputs)
