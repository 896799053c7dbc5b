"""``firmware-bridge inspect LOG...``: what is on this bus, which databases fit it, which signals look useful."""

from __future__ import annotations

import argparse
import sys

from firmware_bridge.errors import InputError
from firmware_bridge.json_output import json_text


#: The database every car shares: a log that fits it best is an OBD-II log.
OBD_DATABASE = "obd2.dbc"


def add_parser(sub, add_decode_options) -> None:
    p = sub.add_parser("inspect", help="what is on this bus: IDs, fitting databases, candidate signals, a signal map")
    p.add_argument("logs", nargs="+", metavar="LOG")
    add_decode_options(p)
    p.add_argument("--vehicle", metavar="CAR", help="also decode with this car's own databases")
    p.add_argument("--format", choices=("json", "table"), default="table")
    p.set_defaults(func=cmd_inspect)


def survey_logs(logs: list[str], dbc: list[str], vehicle: str | None = None) -> dict:
    """The `inspect --format json` document for these logs."""
    from firmware_bridge.decode.dbc import load_database
    from firmware_bridge.decode.decoder import Decoder
    from firmware_bridge.sources.frame_blocks import read_blocks
    from firmware_bridge.sources.logs import LogProblems, check_logs, report_problems
    from firmware_bridge.survey import Survey, candidate_databases, signal_map_toml
    from firmware_bridge.vehicles import load_vehicle

    check_logs(logs)
    survey = Survey()
    for block in read_blocks(logs, LogProblems()):
        survey.add_block(block)
    databases = dict(candidate_databases(dbc))
    fits = sorted((survey.fit(name, db) for name, db in databases.items()),
                  key=lambda f: (-f.pop("score"), -f["ids_matched"], f["name"]))
    chosen = [*(load_vehicle(vehicle).dbc if vehicle else ()), *dbc]
    db = load_database(chosen)
    if not chosen and fits and fits[0]["name"] != OBD_DATABASE:
        # Nothing named: decode with the database that fits best too, so there are signals to rank.
        chosen = [fits[0]["name"]]
        known = {m.frame_id for m in db.messages}
        db.messages.extend(m for m in databases[chosen[0]].messages if m.frame_id not in known)
        db.refresh()
    decoder = Decoder(db, wanted=None)
    problems = LogProblems()
    for block in read_blocks(logs, problems):
        for frame in decoder.decode(block, every_signal=True).frames():
            survey.add_frame(frame, db)
    report_problems(problems)
    frames = decoder.counts.as_dict()
    frames["total"] += problems.count
    frames["malformed"] += problems.count
    ids = []
    for (frame_id, extended), figures in sorted(survey.ids.items()):
        message = survey.message_names.get(frame_id)
        rate = figures.rate_hz()
        ids.append({"id": frame_id, "extended": extended, "count": figures.count,
                    "rate_hz": None if rate is None else round(rate, 3), "dlc": figures.dlc,
                    "message": message})
    candidates = survey.candidates()
    return {"frames": frames, "ids": ids, "databases": fits, "candidates": candidates,
            "signal_map": signal_map_toml(candidates), "decoded_with": chosen}


def table(report: dict) -> str:
    """The same findings for people."""
    f = report["frames"]
    lines = [f"{f['total']} frames: {f['decoded']} decoded, {f['unknown']} unknown, {f['malformed']} malformed",
             "", "IDs on the bus:", f"  {'id':>10}  {'count':>8}  {'rate Hz':>8}  dlc  message"]
    for row in report["ids"]:
        ident = f"0x{row['id']:08X}" if row["extended"] else f"0x{row['id']:03X}"
        rate = "-" if row["rate_hz"] is None else f"{row['rate_hz']:.1f}"
        lines.append(f"  {ident:>10}  {row['count']:>8}  {rate:>8}  {row['dlc']:>3}  {row['message'] or '-'}")
    lines += ["", "Databases that fit best (IDs seen with the database's length):"]
    for fit in report["databases"][:5]:
        lines.append(f"  {fit['name']:<50} {fit['ids_matched']:>4} of {fit['ids_seen']} IDs "
                     f"({100 * fit['coverage']:.0f} %)")
    lines += ["", "Decoded with: " + (", ".join(report["decoded_with"]) or "the OBD-II database only"), "",
              "Candidate signals (best first):"]
    for quantity, ranked in report["candidates"].items():
        if ranked:
            best = ", ".join(f"{c['source']} ({c['score']:.2f}, {c['min']:g}..{c['max']:g})" for c in ranked[:3])
            lines.append(f"  {quantity:<15} {best}")
    lines += ["", "Signal map (save it and pass it with --signal-map):", report["signal_map"].rstrip()]
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    from firmware_bridge.decode.dbc import load_database
    from firmware_bridge.state.vehicle import check_signal_map

    if args.signal_map:
        check_signal_map(args.signal_map, load_database(args.dbc))
    report = survey_logs(args.logs, args.dbc, args.vehicle)
    if args.format == "json":
        report.pop("decoded_with")
        print(json_text(report, indent=1))
    else:
        print(table(report))
    if not report["frames"]["total"]:
        raise InputError(f"{', '.join(args.logs)}: no frames in the log")
    return 0
