"""The ``firmware-bridge`` command: run, demo, replay, stats, decode, simulate .

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr), 1 any other failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from firmware_bridge import __version__
from firmware_bridge.commands import dtc
from firmware_bridge.commands import inspect as inspect_command
from firmware_bridge.commands import learn as learn_command
from firmware_bridge.commands import spool as spool_command
from firmware_bridge.config import analytics_settings, load_config
from firmware_bridge.errors import InputError, RunError
from firmware_bridge.json_output import json_text

log = logging.getLogger("firmware_bridge")


# -- argument parsing ---------------------------------------------------------------------------------------
def _add_decode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dbc", action="append", default=[], metavar="FILE",
                   help="extra database file (repeatable); the OBD-II DBC and the car's own files are always loaded")
    p.add_argument("--signal-map", metavar="FILE",
                   help="TOML map of which MESSAGE.signal gives which quantity (as `inspect` prints one)")


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    _add_decode_options(p)
    p.add_argument("--vehicle", metavar="CAR",
                   help="a bundled car's name, a car folder or a .toml profile (default generic-kei: OBD-II only)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")


def _add_live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interface", help="python-can interface (socketcan, slcan, virtual, ...)")
    p.add_argument("-c", "--channel", help="python-can channel (can0, /dev/ttyACM0, ...)")
    p.add_argument("-b", "--bitrate", type=int, help="bus bitrate in bit/s")
    p.add_argument("--obd", action="store_true", default=None, help="enable OBD-II polling (off: passive)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vehicle-id", metavar="ID", help="the vehicle tag on every point (default: kei)")
    p.add_argument("--out", metavar="FILE.lp", help="append points to an InfluxDB line-protocol file")
    _add_influx_options(p)


def _add_influx_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--influx-url", metavar="URL", help="InfluxDB base URL (env INFLUX_URL)")
    p.add_argument("--influx-api", choices=("v2", "v1"), help="v2 API (2.x, Cloud, 3.x, 1.8+) or v1 /write (env INFLUX_API)")
    p.add_argument("--influx-org", metavar="ORG", help="v2 organisation (env INFLUX_ORG)")
    p.add_argument("--influx-bucket", metavar="NAME", help="v2 bucket; v1 database or db/rp (env INFLUX_BUCKET)")
    p.add_argument("--influx-token", metavar="TOKEN",
                   help="v2 token; v1 token or user:password (env INFLUX_TOKEN, or [influx] token_file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="firmware-bridge", description=(
        "Telemetry and efficiency monitor for kei cars: CAN and OBD-II frames to trips, fuel economy and "
        "speed profiles."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the in-vehicle agent on a live bus")
    _add_pipeline_options(p), _add_live_options(p), _add_output_options(p)
    p.add_argument("--gps", metavar="SOURCE", help="a GPS receiver: gpsd, gpsd://HOST:PORT or a serial port with "
                   "NMEA (/dev/ttyUSB1@4800); with -i none, the GPS is the only source (a GPS-only car)")

    p = sub.add_parser("demo", help="a simulated kei car drives a standard cycle through the whole pipeline")
    _add_pipeline_options(p), _add_output_options(p)
    p.add_argument("--cycle", default="wltc-jp", help="drive cycle (wltc, wltc-jp; default wltc-jp)")
    p.add_argument("--speedup", type=float, default=None, metavar="N",
                   help="pace the drive at N times real time to watch it (default: as fast as the machine can; "
                        "the figures are the same either way)")
    p.add_argument("--pids", default="map", choices=("map", "maf", "fuel_rate"),
                   help="what the simulated ECU offers: MAP only (kei default), +MAF, +MAF and fuel rate 0x5E")
    p.add_argument("--ev", action="store_true",
                   help="an i-MiEV-like kei EV broadcasting its frames (agent passive, profile mitsubishi-i-miev)")
    p.add_argument("--layout-seed", type=int, metavar="N",
                   help="a made-up car with no DBC (layout chosen by N): the agent learns its frames while it polls, "
                        "then stops polling speed and rpm")

    p = sub.add_parser("replay", help="a recorded log through the pipeline to the sinks")
    p.add_argument("logs", nargs="+", metavar="LOG")
    _add_pipeline_options(p), _add_output_options(p)

    p = sub.add_parser("stats", help="trip statistics of recorded logs (no server needed)")
    p.add_argument("logs", nargs="+", metavar="LOG")
    _add_pipeline_options(p)
    p.add_argument("--format", choices=("json", "table"), default="table")

    p = sub.add_parser("report", help="a self-contained HTML trip report with plots (and a PNG to share)")
    p.add_argument("logs", nargs="+", metavar="LOG")
    _add_pipeline_options(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.html", help="the HTML report to write")
    p.add_argument("--png", metavar="FILE.png", help="also write the plots as one PNG image")
    p.add_argument("--title", help="report title (default: the log's name)")

    p = sub.add_parser("decode", help="decoded frames as JSON Lines")
    p.add_argument("logs", nargs="+", metavar="LOG")
    _add_decode_options(p)
    p.add_argument("--vehicle", metavar="CAR", help="also decode with this car's own databases")

    p = sub.add_parser("simulate", help="write a candump log of the simulated kei car")
    p.add_argument("--cycle", default="wltc", help="drive cycle (wltc, wltc-jp)")
    p.add_argument("--out", required=True, metavar="FILE.log", help="output log (format by extension)")
    p.add_argument("--pids", default="map", choices=("map", "maf", "fuel_rate"),
                   help="PIDs the simulated ECU supports (default: MAP only, the kei case)")
    p.add_argument("--no-broadcast", action="store_true", help="OBD-II traffic only, no simulator frames")
    p.add_argument("--no-obd", action="store_true", help="broadcast frames only, no OBD-II traffic")
    p.add_argument("--ev", action="store_true", help="the i-MiEV-like kei EV: its broadcast frames, no OBD-II")
    p.add_argument("--layout-seed", type=int, metavar="N",
                   help="broadcast a made-up car's frames instead (layout chosen by N: a car with no DBC, to learn)")

    inspect_command.add_parser(sub, _add_decode_options)
    spool_command.add_parser(sub, _add_influx_options)
    learn_command.add_parser(sub)

    p = sub.add_parser("fillup", help="record a fill-up (litres pumped at an odometer reading) for fuel calibration")
    p.add_argument("--litres", type=float, required=True, help="litres pumped")
    p.add_argument("--odometer", type=float, required=True, metavar="KM", help="odometer reading, km")
    p.add_argument("--price", type=float, metavar="PER_L", help="price per litre, in your currency")
    p.add_argument("--partial", action="store_true", help="the tank was not filled to the brim")
    p.add_argument("--time", metavar="ISO8601", help="when (default now; without a zone: UTC)")
    p.add_argument("--vehicle", metavar="PROFILE", help="vehicle profile name or .toml path (for the VE report)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    _add_output_options(p)

    p = sub.add_parser("calibration", help="fill-up intervals, pumped vs estimated km/L and the fitted correction")
    p.add_argument("--vehicle", metavar="PROFILE", help="vehicle profile name or .toml path (for the VE report)")
    p.add_argument("--vehicle-id", metavar="ID", help="the vehicle (default: kei)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--format", choices=("json", "table"), default="table")

    dtc.add_parser(sub)
    return parser


# -- helpers ------------------------------------------------------------------------------------------------
def _config(args) -> dict:
    """File, then INFLUX_* environment, then command-line flags: the later wins."""
    from firmware_bridge.config import apply_influx_environment, check_influx

    config = load_config(getattr(args, "config", None))
    apply_influx_environment(config, os.environ)
    for key in ("url", "api", "org", "bucket", "token"):
        value = getattr(args, f"influx_{key}", None)
        if value:
            config["influx"][key] = value
    if getattr(args, "influx_token", None):
        log.warning("--influx-token is visible to every user of this machine (ps, /proc): "
                    "give it as INFLUX_TOKEN or [influx] token_file instead")
    check_influx(config)
    if getattr(args, "out", None):
        config["output"]["line_protocol"] = args.out
    return config


def _outputs(pipeline, args, config, replay=False):
    from firmware_bridge.calibration.recorder import attach_calibration
    from firmware_bridge.sinks.outputs import Outputs

    vehicle_id = args.vehicle_id or config["vehicle"]["id"]
    outputs = Outputs(pipeline, config, vehicle_id, replay=replay,
                      bitrate=getattr(args, "bitrate", None) or config["bus"]["bitrate"])
    if args.command in ("run", "replay"):  # a real car's data: calibrated, and its trips recorded (not demo's)
        attach_calibration(pipeline, config, vehicle_id, emit=outputs.emit if outputs.sinks else None)
    return outputs


def _pipeline(args, config):
    from firmware_bridge.pipeline import Pipeline, PipelineOptions

    return Pipeline(PipelineOptions(
        dbc_files=[*config["vehicle"]["dbc"], *args.dbc],
        vehicle=args.vehicle or config["vehicle"]["profile"],
        signal_map=getattr(args, "signal_map", None) or config["vehicle"]["signal_map"],
        settings=analytics_settings(config)))


def _replay(pipeline, logs, progress: bool | None = None) -> int:
    """Logs read and decoded in blocks (numpy; identical to python-can + cantools, tested), fed in file order."""
    from firmware_bridge.replay import replay_blocks
    from firmware_bridge.sources.frame_blocks import read_blocks
    from firmware_bridge.sources.gps import read_nmea, split_gps_logs, with_gps
    from firmware_bridge.sources.logs import LogProblems, report_problems
    from firmware_bridge.progress import over_logs, wanted
    from firmware_bridge.watch import BusWatch

    problems = LogProblems()
    can_logs, nmea_logs = split_gps_logs(logs)
    blocks = read_blocks(can_logs, problems)
    if progress if progress is not None else wanted():
        blocks = over_logs(blocks, can_logs)
    if nmea_logs:  # GPS fixes put between the CAN frames in time order
        blocks = with_gps(blocks, read_nmea(nmea_logs, problems, pipeline.gps_counts))
    replay_blocks(pipeline, blocks)
    pipeline.finish()
    report_problems(problems)
    if can_logs:  # what the CAN logs showed (GPS logs alone are no bus)
        BusWatch(pipeline, ", ".join(str(log) for log in can_logs)).check()
    return problems.count


# -- commands -----------------------------------------------------------------------------------------------
def cmd_stats(args) -> int:
    from firmware_bridge.calibration.recorder import attach_calibration
    from firmware_bridge.sinks.console import trips_table
    from firmware_bridge.sources.logs import check_logs

    config = _config(args)
    check_logs(args.logs)
    pipeline = _pipeline(args, config)
    attach_calibration(pipeline, config, config["vehicle"]["id"], record=False)  # the fill-up correction, if any
    bad_lines = _replay(pipeline, args.logs)
    stats = pipeline.stats(malformed_lines=bad_lines)
    print(json_text(stats, indent=2) if args.format == "json" else trips_table(stats))
    return 0


def cmd_replay(args) -> int:
    from firmware_bridge.sinks.console import trips_table
    from firmware_bridge.sources.logs import check_logs

    config = _config(args)
    check_logs(args.logs)
    pipeline = _pipeline(args, config)
    outputs = _outputs(pipeline, args, config, replay=True)
    for where in outputs.describe():
        print(f"replay: writing {where}", file=sys.stderr)
    bad_lines = _replay(pipeline, args.logs)
    summary = outputs.close(drain_stall_s=config["spool"]["drain_s"])
    print(trips_table(pipeline.stats(malformed_lines=bad_lines)))
    print(f"replay: {summary}" if summary else "replay: no sink configured (--out or --influx-url)", file=sys.stderr)
    if outputs.auth_error:
        raise InputError(outputs.auth_error)
    if outputs.undelivered:
        print(f"replay: not every point was delivered: {outputs.undelivered}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from firmware_bridge.analytics.points import PointEmitter
    from firmware_bridge.sinks.report import DriveSeries, render_html, render_png
    from firmware_bridge.sources.logs import check_logs

    config = _config(args)
    check_logs(args.logs)
    if not args.output.lower().endswith((".html", ".htm")):
        raise InputError(f"{args.output}: the report is HTML: give a .html file name")
    pipeline = _pipeline(args, config)
    series = DriveSeries()
    PointEmitter(pipeline, series.add, "report")
    bad_lines = _replay(pipeline, args.logs)
    stats = pipeline.stats(malformed_lines=bad_lines)
    if not stats["trips"]:
        raise InputError(f"{', '.join(args.logs)}: no trip found (nothing moved for {config['analytics']['min_trip_s']:g} s)")
    title = args.title or f"Trip report: {Path(args.logs[0]).name}"
    Path(args.output).write_text(render_html(series, stats, pipeline.profile, title), encoding="utf-8")
    print(f"report: {args.output}", file=sys.stderr)
    if args.png:
        render_png(args.png, series, stats, pipeline.profile, title)
        print(f"report: {args.png}", file=sys.stderr)
    return 0


def cmd_decode(args) -> int:
    from firmware_bridge.decode.dbc import load_database
    from firmware_bridge.decode.decoder import Decoder
    from firmware_bridge.records import DecodedFrame
    from firmware_bridge.sources.frame_blocks import read_blocks
    from firmware_bridge.sources.gps import GpsCounts, read_nmea, split_gps_logs, with_gps
    from firmware_bridge.sources.logs import LogProblems, check_logs, report_problems

    check_logs(args.logs)
    from firmware_bridge.state.vehicle import check_signal_map

    from firmware_bridge.vehicles import load_vehicle

    database = load_database([*(load_vehicle(args.vehicle).dbc if args.vehicle else ()), *args.dbc])
    if args.signal_map:
        check_signal_map(args.signal_map, database)
    decoder = Decoder(database, wanted=None)  # every signal, as cantools gives them
    problems = LogProblems()
    out = sys.stdout
    can_logs, nmea_logs = split_gps_logs(args.logs)
    for block in with_gps(read_blocks(can_logs, problems), read_nmea(nmea_logs, problems, GpsCounts())):
        for frame in [block] if isinstance(block, DecodedFrame) else decoder.decode(block, every_signal=True).frames():
            out.write(json_text({"t": frame.t, "id": frame.frame_id, "message": frame.message,
                                  "signals": frame.signals}) + "\n")
    report_problems(problems)
    c = decoder.counts
    print(f"{c.total + problems.count} frames: {c.decoded} decoded, {c.unknown} unknown, "
          f"{c.malformed + problems.count} malformed", file=sys.stderr)
    return 0


def cmd_simulate(args) -> int:
    from firmware_bridge.progress import over_drive, wanted
    from firmware_bridge.sim import CYCLE_NAMES, EvConfig, seeded_layout, write_log
    from firmware_bridge.sources.logs import log_format

    if args.cycle not in CYCLE_NAMES:
        raise InputError(f"unknown cycle {args.cycle!r}; available: {', '.join(CYCLE_NAMES)}")
    log_format(Path(args.out))
    if args.no_broadcast and args.no_obd:
        raise InputError("--no-broadcast and --no-obd together leave nothing to record")
    progress = over_drive if wanted() else None
    if args.ev:  # replay it with --vehicle mitsubishi-i-miev (the profile that loads the i-MiEV DBC)
        truth = write_log(args.out, args.cycle, EvConfig(), progress=progress)
        print(f"{args.out}: {args.cycle}, i-MiEV-like EV, {truth.duration_s:.0f} s, true distance "
              f"{truth.distance_km:.3f} km, true pack energy {truth.energy_kwh:.3f} kWh ({truth.wh_per_km:.0f} Wh/km, "
              f"{truth.energy_regen_kwh:.3f} kWh regenerated)", file=sys.stderr)
        return 0
    seeded = args.layout_seed is not None and not args.no_broadcast
    broadcast = seeded_layout(args.layout_seed).schedule() if seeded else not args.no_broadcast
    truth = write_log(args.out, args.cycle, pid_set=args.pids, broadcast=broadcast,
                      obd_poll_hz=0.0 if args.no_obd else 10.0, progress=progress)
    hint = "" if args.no_broadcast else (f"; a made-up layout (seed {args.layout_seed}): learn it with "
                                         "`firmware-bridge learn`" if seeded else
                                         "; read it with --vehicle kei-sim (the simulator's own frames)")
    print(f"{args.out}: {args.cycle}, {truth.duration_s:.0f} s, true distance {truth.distance_km:.3f} km, "
          f"true fuel {truth.fuel_l:.3f} L ({truth.distance_km / truth.fuel_l:.1f} km/L){hint}", file=sys.stderr)
    return 0


def _live(args, config, bus, clock, pipeline, source: str, until=None, loop=None) -> None:
    """Shared by run and demo: poller (if enabled), live view, sinks, systemd notifications, and a clean stop
    on SIGINT/SIGTERM (queued points committed to the spool, a few seconds to deliver them). ``loop`` replaces
    the live loop (the demo's runs on the simulator's clock)."""
    import time

    from firmware_bridge import systemd
    from firmware_bridge.learn.live import live_learner
    from firmware_bridge.obd.diagnostics import DiagnosticsWatch, FreezeFrameDecoder
    from firmware_bridge.obd.poller import ObdPoller, poll_settings
    from firmware_bridge.sinks.console import LiveView
    from firmware_bridge.sources.gps import GpsReceiver
    from firmware_bridge.sources.live import BusHealth, run_live
    from firmware_bridge.watch import BusWatch

    polling = args.obd if args.obd is not None else config["obd"]["enabled"]
    settings = poll_settings(config["obd"])  # refused here, polling or not: a bad cap never waits to bite
    outputs = _outputs(pipeline, args, config)
    print(f"firmware-bridge: reading {source}; OBD-II polling "
          f"{'on, at most %g requests/s' % config['obd']['max_requests_per_s'] if polling else 'off (passive)'}; "
          f"vehicle profile {pipeline.profile.name}", file=sys.stderr)
    for where in outputs.describe() or ["nowhere but the console (no --out or --influx-url)"]:
        print(f"firmware-bridge: writing {where}", file=sys.stderr)
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    bus_health = BusHealth(bus, source)  # error frames and the controller's state, before decoding
    pipeline.block_listeners.append(bus_health.on_block)
    outputs.health.bus = bus_health
    listeners = []
    poller = None
    view = LiveView(pipeline) if config["output"]["console"] else None
    if polling:
        values = pipeline.state.values
        diagnostics = DiagnosticsWatch(outputs.emit if outputs.sinks else None,
                                       args.vehicle_id or config["vehicle"]["id"], FreezeFrameDecoder(pipeline.decoder.db))
        poller = ObdPoller(bus, settings, clock, engine_rpm=lambda: values.get("engine_rpm"),
                           speed_kmh=lambda: values.get("speed_kmh"), diagnostics=diagnostics,
                           diagnostics_interval_s=config["obd"]["diagnostics_interval_s"])
        listeners.append(poller)
    learner = live_learner(config, pipeline, poller)  # [learn] enabled: the car's own frames, learnt on the way
    if learner is not None:
        listeners.append(learner)
    watchdog_s = systemd.watchdog_interval_s()
    next_ping, starving = 0.0, False
    watch, started, silence_warn_s = BusWatch(pipeline, source, polling), clock.now(), config["bus"]["silence_warn_s"]

    def on_tick():
        nonlocal next_ping, starving
        was_off = bus_health.bus_off_count
        bus_health.poll()
        if bus_health.bus_off_count != was_off and (point := outputs.health.point(clock.now())) is not None:
            outputs.emit(point)  # the agent point says so at once: no samples arrive from a bus that is off
        if view is not None:
            if poller is not None and diagnostics.summary:
                view.notes["dtc"] = diagnostics.summary
            view.update()
        if bus is not None and clock.now() - started >= silence_warn_s:
            watch.check(clock.now() - started)
        if watchdog_s is not None and time.monotonic() >= next_ping:
            next_ping = time.monotonic() + watchdog_s
            starved = outputs.spool_failing_s() > 2 * watchdog_s  # longer than WatchdogSec
            if not starved:
                systemd.notify("WATCHDOG=1")
            elif not starving:
                log.error("the spool cannot be written for %.0f s: no longer feeding systemd's watchdog, so "
                          "it restarts the agent", outputs.spool_failing_s())
            starving = starved
        if until is not None and until():
            stop.set()
        if learner is not None:
            learner.tick()

    gps_source = getattr(args, "gps", None) or config["gps"]["source"]
    gps = GpsReceiver(gps_source, clock, pipeline.gps_counts) if gps_source else None
    if gps is not None:
        print(f"firmware-bridge: reading GPS fixes from {gps_source}", file=sys.stderr)
    if poller is not None:
        poller.start()
    systemd.notify(f"READY=1\nSTATUS=reading {source}")
    try:
        if loop is None:
            run_live(bus, pipeline, clock, stop, listeners, on_tick, gps=gps)
        else:
            loop(bus, pipeline, clock, stop, listeners, on_tick)
    finally:
        systemd.notify("STOPPING=1")
        if poller is not None:
            poller.stop()
        if view is not None:
            view.close()
        summary = outputs.close(drain_stall_s=config["spool"]["drain_s"])
        if summary:
            print(f"firmware-bridge: {summary}", file=sys.stderr)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


#: Trips `run` keeps in memory for its closing table (the daemon may run for months; InfluxDB keeps them all).
RUN_TRIPS_KEPT = 100


def cmd_run(args) -> int:
    from firmware_bridge.clock import RealClock
    from firmware_bridge.config import bus_settings
    from firmware_bridge.sinks.console import trips_table
    from firmware_bridge.sources.bus import open_bus

    config = _config(args)
    pipeline = _pipeline(args, config)
    pipeline.tracker.keep_finished = RUN_TRIPS_KEPT
    settings = bus_settings(config, args.interface, args.channel, args.bitrate)
    if settings["interface"] == "none":  # no CAN bus at all: a GPS-only car
        bus, source = None, "no CAN bus"
    else:
        bus = open_bus(**settings)  # no kernel filters: the health figures (and learning) need every frame
        source = ":".join(str(settings[k]) for k in ("interface", "channel") if settings[k] is not None) + (
            f" at {settings['bitrate']} bit/s" if settings["bitrate"] else "")
    try:
        _live(args, config, bus, RealClock(), pipeline, source)
    finally:
        if bus is not None:
            bus.shutdown()
    print(trips_table(pipeline.stats()))
    return 0


def cmd_demo(args) -> int:
    import functools

    import can

    from firmware_bridge.clock import SimClock
    from firmware_bridge.sim import CYCLE_NAMES, CarConfig, EvConfig, SimulatedCar, load_cycle, seeded_layout
    from firmware_bridge.sim.runner import LOG_START_UNIX_S, differences_from_truth, run_on_sim_clock
    from firmware_bridge.sinks.console import trips_table

    if args.cycle not in CYCLE_NAMES:
        raise InputError(f"unknown cycle {args.cycle!r}; available: {', '.join(CYCLE_NAMES)}")
    config = _config(args)
    config["obd"]["enabled"] = args.obd = not args.ev  # an EV broadcasts: nobody polls it
    if args.layout_seed is not None:  # a car to learn on the way
        config["learn"].update(enabled=True, go_passive=True)
    args.vehicle = args.vehicle or ("mitsubishi-i-miev" if args.ev else "kei-sim")
    pipeline = _pipeline(args, config)
    clock = SimClock(LOG_START_UNIX_S, threads=0 if args.ev else 1)  # the poller's thread waits on it
    channel = f"firmware-bridge-demo-{os.getpid()}"
    car_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    agent_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    cycle = load_cycle(args.cycle)
    learning = args.layout_seed is not None and not args.ev
    car = SimulatedCar(car_bus, EvConfig() if args.ev else CarConfig(), cycle, pid_set=args.pids, clock=clock,
                       broadcast=seeded_layout(args.layout_seed).schedule() if learning else args.ev)
    what = ("i-MiEV-like kei EV", "the agent reads its broadcast frames") if args.ev else (
        "658 cc kei car", f"the agent polls OBD-II ({args.pids} PIDs)")
    if learning:
        what = ("658 cc kei car with a made-up layout (no DBC)",
                f"the agent polls OBD-II ({args.pids} PIDs) and learns the car's own frames")
    pace = f"paced at {args.speedup:g}x real time" if args.speedup else "as fast as this machine can"
    print(f"demo: simulated {what[0]} drives {args.cycle} ({cycle.duration_s:.0f} s) on a virtual CAN bus, {pace}, "
          f"on the simulator's clock; {what[1]}", file=sys.stderr)
    try:
        _live(args, config, agent_bus, clock, pipeline, f"the simulated car on virtual:{channel}",
              until=car.finished.is_set,
              loop=functools.partial(run_on_sim_clock, cars=[car], speedup=args.speedup))
    finally:
        agent_bus.shutdown()
        car_bus.shutdown()
    stats = pipeline.stats()
    print()
    print(trips_table(stats))
    truth = car.truth
    if args.ev:
        print(f"\nsimulator ground truth: {truth.distance_km:.3f} km, {truth.energy_kwh:.3f} kWh out of the pack "
              f"({truth.wh_per_km:.0f} Wh/km), {truth.energy_regen_kwh:.3f} kWh regenerated")
    else:
        print(f"\nsimulator ground truth: {truth.distance_km:.3f} km, {truth.fuel_l:.3f} L "
              f"({truth.distance_km / truth.fuel_l:.1f} km/L)")
    problems = differences_from_truth(stats, truth, args.pids)
    for problem in problems:
        print(f"demo: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_fillup(args) -> int:
    from firmware_bridge.calibration.commands import cmd_fillup as record_fillup

    return record_fillup(args, _config(args))


def cmd_calibration(args) -> int:
    from firmware_bridge.calibration.commands import cmd_calibration as show_calibration

    return show_calibration(args, _config(args))


#: Command-line numbers and the range each is checked against (the file's key where there is one).
NUMBER_OPTIONS = {"bitrate": "bus.bitrate", "speedup": "--speedup", "litres": "--litres", "odometer": "--odometer",
                  "price": "--price"}


def _check_numbers(args) -> None:
    from firmware_bridge.config import check_number

    for attr, key in NUMBER_OPTIONS.items():
        check_number(key, getattr(args, attr, None))


COMMANDS = {"run": cmd_run, "demo": cmd_demo, "replay": cmd_replay, "stats": cmd_stats, "report": cmd_report,
            "decode": cmd_decode, "simulate": cmd_simulate, "fillup": cmd_fillup, "calibration": cmd_calibration,
            "dtc": lambda args: dtc.run(args, _config(args))}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        _check_numbers(args)
        return (getattr(args, "func", None) or COMMANDS[args.command])(args)
    except InputError as exc:
        print(f"firmware-bridge: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # an OSError too: before it, so `... | head` ends quietly
        return 0
    except OSError as exc:
        if exc.filename is None or args.verbose:
            raise
        print(f"firmware-bridge: error: {exc.filename}: {exc.strerror}", file=sys.stderr)  # a path we were given
        return 2
    except KeyboardInterrupt:
        return 130
    except RunError as exc:
        print(f"firmware-bridge: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything else: one line, exit 1 (run with -v for the traceback)
        if args.verbose:
            raise
        print(f"firmware-bridge: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
