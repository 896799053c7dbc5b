"""`firmware-bridge dtc`: why the check-engine light is on. Trouble codes, MIL, freeze frame, VIN and readiness
read from the car's ECUs (read-only services), under the same request cap and IDs as the poller; `--clear`
(mode 04) only with `--yes`. The one command that transmits when polling is off, and it says so."""

from __future__ import annotations

import argparse
import sys

import can

from firmware_bridge.errors import InputError
from firmware_bridge.json_output import json_text

CLEAR_WARNING = ("--clear erases every ECU's stored and pending trouble codes, their freeze frames and the "
                 "readiness monitors (an inspection then needs a full drive cycle first), and turns the "
                 "check-engine light off until the fault is seen again")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("dtc", help="trouble codes, check-engine light, freeze frame, VIN and readiness "
                                   "(transmits OBD-II requests)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("-i", "--interface", help="python-can interface (socketcan, slcan, elm327, virtual, ...)")
    p.add_argument("-c", "--channel", help="python-can channel (can0, /dev/ttyUSB0, ...)")
    p.add_argument("-b", "--bitrate", type=int, help="bus bitrate in bit/s")
    p.add_argument("--format", choices=("json", "table"), default="table")
    p.add_argument("--clear", action="store_true", help="clear the trouble codes (mode 04; needs --yes)")
    p.add_argument("--yes", action="store_true", help="confirm --clear")
    return p


def run(args, config: dict) -> int:
    from firmware_bridge.config import bus_settings
    from firmware_bridge.decode.dbc import load_database
    from firmware_bridge.obd import diagnostics, ids
    from firmware_bridge.obd.poller import ObdPoller, poll_settings
    from firmware_bridge.sources.bus import open_bus

    if args.clear and not args.yes:
        raise InputError(f"{CLEAR_WARNING}. Nothing was sent; add --yes to clear")
    settings = poll_settings(config["obd"])
    bus_options = bus_settings(config, args.interface, args.channel, args.bitrate)
    bus = open_bus(filters=[dict(f) for f in ids.RESPONSE_FILTERS], **bus_options)
    poller = ObdPoller(bus, settings)
    notifier = can.Notifier(bus, [poller])
    try:
        print(f"dtc: asking the ECUs on {bus_options['interface']}:{bus_options['channel']} "
              f"(this command transmits OBD-II requests to 0x{settings.request_id:X}, at most "
              f"{poller.max_requests_per_s:g}/s, fewer on K-line)", file=sys.stderr)
        if args.clear:
            print(f"dtc: warning: {CLEAR_WARNING}", file=sys.stderr)
            for service, status in ((diagnostics.SERVICE_STORED, "stored"), (diagnostics.SERVICE_PENDING, "pending")):
                codes = " ".join(f"{c.code} ({c.ecu})" for c in diagnostics.read_codes(poller.exchange, service))
                print(f"dtc: erasing {status} codes: {codes or 'none'}", file=sys.stderr)
            cleared = diagnostics.clear_codes(poller.exchange)
            print(f"dtc: cleared by {', '.join(cleared) if cleared else 'no ECU (none confirmed)'}", file=sys.stderr)
        found = diagnostics.read_diagnostics(poller.exchange, diagnostics.FreezeFrameDecoder(
            load_database(bundled=True)))
    finally:
        notifier.stop()
        bus.shutdown()
    if not found.ecus:
        print("dtc: no ECU answered (ignition off, the adapter on another protocol, or a bus that is not the "
              "OBD-II one)", file=sys.stderr)
        return 1
    print(json_text(found.as_dict(), indent=2) if args.format == "json" else table(found))
    return 0


def table(found) -> str:
    from firmware_bridge.obd.codes import describe

    lines = [f"VIN              {found.vin or '—'}",
             f"check-engine     {'ON' if found.mil_on else 'off'} ({found.dtc_count} code(s) reported)",
             f"ECUs             {', '.join(found.ecus)}"]
    if found.calibration_ids:
        lines.append(f"calibration IDs  {', '.join(found.calibration_ids)}")
    for title, codes in (("stored", found.stored), ("pending", found.pending), ("permanent", found.permanent)):
        lines.append(f"{title:<17}{'none' if not codes else ''}")
        lines += [f"  {c.code}  {describe(c.code)}  (ECU {c.ecu})" for c in codes]
    if found.freeze_frame:
        lines.append("freeze frame     " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in found.freeze_frame.items()))
    if found.readiness:
        lines.append("readiness        " + ", ".join(f"{k} {v}" for k, v in found.readiness.items()))
    return "\n".join(lines)
