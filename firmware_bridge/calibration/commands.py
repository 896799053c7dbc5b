"""The ``fillup`` and ``calibration`` commands: record what the pump said, show what the agent made of it."""

from __future__ import annotations

import time

from firmware_bridge import localtime
from firmware_bridge.calibration.fit import Correction, fit, intervals
from firmware_bridge.calibration.ledger import Fillup, Ledger
from firmware_bridge.calibration.points import calibration_points, fillup_point
from firmware_bridge.calibration.recorder import ledger_path
from firmware_bridge.errors import InputError
from firmware_bridge.json_output import json_text
from firmware_bridge.records import Point
from firmware_bridge.vehicles import load_vehicle


def parse_time(text: str | None) -> float:
    """ISO 8601 (a time without a zone is local time); now when not given."""
    if text is None:
        return time.time()
    try:
        return localtime.parse(text)
    except ValueError:
        raise InputError(f"--time: expected an ISO 8601 time such as 2026-04-01T09:30, got {text!r}") from None


def describe(correction: Correction | None, profile_ve: float) -> str:
    if correction is None:
        return "not calibrated yet"
    spread = f", spread ±{correction.spread:.3f}" if correction.spread is not None else ", spread unknown"
    ve = correction.volumetric_efficiency(profile_ve)
    ve_text = f" (volumetric efficiency {profile_ve:.3f} -> {ve:.3f})" if ve is not None else ""
    return (f"{correction.fuel_source}: factor {correction.factor:.3f}{ve_text} from {correction.intervals} "
            f"full-tank interval{'s' if correction.intervals != 1 else ''}{spread}")


def _send(points: list[Point], config: dict) -> str:
    """Points straight to the line-protocol file and InfluxDB when configured; says what happened."""
    from firmware_bridge.sinks.influx import WriteError, make_writer
    from firmware_bridge.sinks.line_protocol import LineProtocolFile, to_line
    from firmware_bridge.sinks.outputs import influx_target

    said = []
    if config["output"]["line_protocol"]:
        sink = LineProtocolFile(config["output"]["line_protocol"])
        for point in points:
            sink.write(point)
        sink.close()
        said.append(f"{len(points)} points appended to {sink.path}")
    target = influx_target(config)
    if target is not None:
        writer = make_writer(target)
        try:
            writer.write("\n".join(line for p in points if (line := to_line(p))).encode("utf-8"))
            said.append(f"{len(points)} points sent to {target.describe()}")
        except WriteError as exc:  # the ledger has it: the agent sends it when it next runs
            said.append(f"not sent to {target.describe()} ({exc}); the agent sends it when it next runs")
        finally:
            writer.close()
    return "; ".join(said)


def cmd_fillup(args, config: dict) -> int:
    vehicle_id = args.vehicle_id or config["vehicle"]["id"]
    profile = load_vehicle(args.vehicle or config["vehicle"]["profile"])
    fillup = Fillup(parse_time(args.time), args.odometer, args.litres, args.price, args.partial)
    ledger = Ledger(ledger_path(config))
    try:
        ledger.add_fillup(vehicle_id, fillup)
        spans = intervals(ledger.fillups(vehicle_id), ledger.trips(vehicle_id))
    finally:
        ledger.close()
    min_intervals = config["calibration"]["min_intervals"]
    corrections = fit(spans, min_intervals)
    print(f"fillup: {fillup.litres:.2f} L{' (partial)' if fillup.partial else ''} at {fillup.odometer_km:,.0f} km, "
          f"{fillup.when}, recorded for vehicle {vehicle_id!r} in {ledger.path}")
    closed = spans[-1] if spans and spans[-1].end == fillup else None
    if closed is not None and closed.pumped_km_per_l is not None:
        estimate = f"{closed.estimated_km_per_l:.1f} km/L estimated" if closed.estimated_km_per_l else "no trips"
        print(f"fillup: since the last full tank {closed.distance_km:,.0f} km on {closed.pumped_l:.2f} L = "
              f"{closed.pumped_km_per_l:.1f} km/L pumped, {estimate} "
              f"({closed.trips} trips covering {100 * closed.coverage:.0f} % of the distance)")
    for source in sorted(corrections) or [None]:
        print(f"calibration: {describe(corrections.get(source), profile.volumetric_efficiency)}")
    points = [fillup_point(fillup, vehicle_id)]
    points += calibration_points(spans, vehicle_id, min_intervals, profile.volumetric_efficiency)
    sent = _send(points, config)
    if sent:
        print(f"fillup: {sent}")
    return 0


def calibration_report(config: dict, vehicle_id: str, profile_ve: float) -> dict:
    """Fill-ups, intervals and corrections as plain data (the ``calibration --format json`` output)."""
    path = ledger_path(config)
    ledger = Ledger(path)
    try:
        fillups = ledger.fillups(vehicle_id)
        spans = intervals(fillups, ledger.trips(vehicle_id))
    finally:
        ledger.close()
    corrections = fit(spans, config["calibration"]["min_intervals"])
    return {
        "vehicle": vehicle_id,
        "ledger": str(path),
        "fillups": [{"time": localtime.iso_utc(f.t), "odometer_km": f.odometer_km, "litres": f.litres, "price_per_l": f.price_per_l,
                     "partial": f.partial} for f in fillups],
        "intervals": [{"from_km": i.start.odometer_km, "to_km": i.end.odometer_km, "distance_km": i.distance_km,
                       "pumped_l": i.pumped_l, "estimated_l": i.estimated_l, "trips": i.trips,
                       "coverage": i.coverage, "fuel_source": i.fuel_source, "usable": i.usable,
                       "pumped_km_per_l": i.pumped_km_per_l, "estimated_km_per_l": i.estimated_km_per_l,
                       "factor": i.factor} for i in spans],
        "corrections": {s: {"factor": c.factor, "intervals": c.intervals, "spread": c.spread,
                            "volumetric_efficiency": c.volumetric_efficiency(profile_ve)}
                        for s, c in corrections.items()},
    }


def cmd_calibration(args, config: dict) -> int:
    profile = load_vehicle(args.vehicle or config["vehicle"]["profile"])
    report = calibration_report(config, args.vehicle_id or config["vehicle"]["id"], profile.volumetric_efficiency)
    if args.format == "json":
        print(json_text(report, indent=2))
        return 0
    print(f"vehicle {report['vehicle']!r}, ledger {report['ledger']}: {len(report['fillups'])} fill-ups")
    print(f"{'from km':>9} {'to km':>9} {'pumped L':>9} {'est. L':>8} {'pumped km/L':>11} {'est. km/L':>9} "
          f"{'factor':>6} {'cover':>6}  source")
    for i in report["intervals"]:
        cells = [f"{i['from_km']:9.0f}", f"{i['to_km']:9.0f}", f"{i['pumped_l']:9.2f}", f"{i['estimated_l']:8.2f}"]
        cells += [f"{v:{w}.{p}f}" if v is not None else f"{'—':>{w}}"
                  for v, w, p in ((i["pumped_km_per_l"], 11, 1), (i["estimated_km_per_l"], 9, 1), (i["factor"], 6, 3))]
        cells.append(f"{100 * i['coverage']:5.0f}%")
        print(" ".join(cells) + f"  {i['fuel_source'] or '—'}{'' if i['usable'] else ' (not used)'}")
    for source, c in sorted(report["corrections"].items()) or [(None, None)]:
        print("calibration: " + describe(Correction(source, c["factor"], c["intervals"], c["spread"]) if c else None,
                                          profile.volumetric_efficiency))
    return 0
