"""``firmware-bridge learn LOG... --name NAME --out DIR``: a car folder learnt from broadcast frames + OBD-II.

Exit 0 when the logs were read, whether or not anything was found (then nothing is written and stderr says
why); 2 for bad input (a missing or unreadable log, a bad name or folder).
"""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("learn", help="find speed, rpm, ... in a car's own broadcast frames from a drive "
                                            "logged with OBD-II polling on, and write its car folder")
    p.add_argument("logs", nargs="+", metavar="LOG")
    p.add_argument("--name", required=True, help="the car's name: the folder DIR/NAME and its NAME.dbc")
    p.add_argument("--out", required=True, metavar="DIR", help="where the car folder goes")
    p.add_argument("--format", choices=("json", "table"), default="table")
    p.set_defaults(func=cmd_learn)


def _row(finding) -> dict:
    layout = finding.layout
    return {"id": layout.frame_id, "start_bit": layout.start_bit, "length": layout.length,
            "byte_order": layout.byte_order, "signed": layout.signed, "scale": finding.scale,
            "offset": finding.offset, "fit_rmse": round(finding.fit_rmse, 6), "coverage": round(finding.coverage, 4),
            "confidence": finding.confidence}


def _table(findings, missing, written) -> str:
    lines = [f"{'quantity':<15} {'frame':>9} {'bits':>9} {'order':<6} {'scale':>11} {'offset':>8} {'RMSE':>8} "
             f"{'cover':>5} {'conf':>5}"]
    for f in findings:
        lo = f.layout
        order = "intel" if lo.byte_order == "little_endian" else "motor"
        lines.append(f"{f.quantity:<15} {'0x%X' % lo.frame_id:>9} {f'{lo.start_bit}|{lo.length}' + ('-' if lo.signed else '+'):>9} "
                     f"{order:<6} {f.scale:>11.6g} {f.offset:>8g} {f.fit_rmse:>8.4g} {f.coverage:>5.2f} "
                     f"{f.confidence:>5.2f}{'' if f.found else '  (too weak)'}")
    lines += [f"{m.quantity:<15} not learnt: {m.reason}" for m in missing]
    lines += [f"wrote {path}" for path in written]
    return "\n".join(lines)


def cmd_learn(args) -> int:
    from firmware_bridge.json_output import json_text
    from firmware_bridge.learn import learn_logs
    from firmware_bridge.learn.folder import check_name, write_folder
    from firmware_bridge.sources.logs import LogProblems, check_logs, report_problems

    check_name(args.name)
    check_logs(args.logs)
    problems = LogProblems()
    evidence, findings, missing = learn_logs(args.logs, problems)
    report_problems(problems)
    found = [f for f in findings if f.found]
    written = []
    if found:
        written = [str(p) for p in write_folder(args.out, args.name, args.logs, evidence, findings, missing)]
    else:
        if not evidence.obd_answers:
            why = f"the logs hold no OBD-II answers for {', '.join(evidence.signals)} (record a drive with --obd on)"
        elif not evidence.ids:
            why = "the logs hold no broadcast frames (an ELM327 hears only its answers: use a raw CAN adapter)"
        else:
            why = "; ".join(f"{m.quantity}: {m.reason}" for m in missing) or "no signal fits well enough"
        print(f"learn: nothing found, too little evidence: {why}", file=sys.stderr)
    if args.format == "json":
        print(json_text({"quantities": {f.quantity: _row(f) for f in found}, "written": written}, indent=2))
    else:
        print(_table(findings, missing, written))
    return 0


__all__ = ["add_parser", "cmd_learn"]
