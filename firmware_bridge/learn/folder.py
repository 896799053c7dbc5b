"""A learnt car as a car folder: ``profile.toml``, ``NAME.dbc`` (written by cantools), ``signal_map.toml`` and
``REPORT.md``, so ``--vehicle DIR/NAME`` reads the car passively on every command.

The profile is a stub: the engine figures are the generic kei car's until the owner fills in their own.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import cantools
from cantools.database.conversion import BaseConversion

from firmware_bridge.errors import InputError
from firmware_bridge.learn.evidence import Evidence
from firmware_bridge.learn.fit import Finding, Missing
from firmware_bridge.vehicles import DEFAULT_VEHICLE, VehicleProfile, load_vehicle

#: Units of the canonical quantities, for the DBC.
UNITS = {"speed_kmh": "km/h", "engine_rpm": "rpm", "coolant_c": "degC", "throttle_pct": "%", "fuel_level_pct": "%",
         "map_kpa": "kPa", "maf_gps": "g/s"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Profile keys the stub writes, in this order (the rest stay unknown until the owner adds them).
_STUB_KEYS = ("description", "fuel", "displacement_l", "volumetric_efficiency", "idle_rpm")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InputError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (it names the car's folder)")
    return name


def message_name(name: str, frame_id: int) -> str:
    """A DBC message name for the car's frame: its name as an identifier and the frame ID."""
    return re.sub(r"\W", "_", name).upper() + f"_{frame_id:03X}"


def signal_source(name: str, finding: Finding) -> str:
    """The signal map's ``MESSAGE.signal`` for a finding."""
    return f"{message_name(name, finding.layout.frame_id)}.{finding.quantity}"


def database(name: str, findings: list[Finding], evidence: Evidence) -> cantools.database.Database:
    by_id: dict[tuple[int, bool], list[Finding]] = {}
    for finding in findings:
        by_id.setdefault((finding.layout.frame_id, finding.layout.extended), []).append(finding)
    messages = []
    for (frame_id, extended), found in sorted(by_id.items()):
        stats = evidence.ids[(frame_id, extended)]
        signals = []
        for f in found:
            layout = f.layout
            raw_min, raw_max = ((-(1 << layout.length - 1), (1 << layout.length - 1) - 1) if layout.signed
                                else (0, (1 << layout.length) - 1))
            low, high = sorted((raw_min * f.scale + f.offset, raw_max * f.scale + f.offset))
            signals.append(cantools.database.can.Signal(
                f.quantity, layout.start_bit, layout.length, layout.byte_order, layout.signed,
                conversion=BaseConversion.factory(f.scale, f.offset), minimum=low, maximum=high,
                unit=UNITS.get(f.quantity), comment=f"Learnt from OBD-II: RMSE {f.fit_rmse:.4g}, confidence "
                                                     f"{f.confidence:.3f}"))
        period_ms = round(stats.period_s * 1000) if stats.period_s else None
        messages.append(cantools.database.can.Message(
            frame_id, message_name(name, frame_id), max(stats.max_length, 1), signals, is_extended_frame=extended,
            cycle_time=period_ms or None, comment=f"Broadcast frame of {name}, learnt by firmware-bridge learn."))
    return cantools.database.can.Database(messages=messages)


def _toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def profile_text(name: str, logs: list[str]) -> str:
    base = load_vehicle(DEFAULT_VEHICLE)
    lines = [f"# {name}: learnt by `firmware-bridge learn` from {', '.join(Path(p).name for p in logs)}.",
             "# A stub: the engine figures are the generic kei car's. Put your car's own here (keys as in the",
             "# bundled profiles: engine, bore_mm, stroke_mm, tank_l, curb_mass_kg, a [catalog] table, ...).",
             f"name = {_toml_value(name)}"]
    known = {f.name for f in fields(VehicleProfile)}
    for key in _STUB_KEYS:
        value = getattr(base, key) if key != "description" else f"{name} (learnt broadcast signals)"
        if key in known and value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    lines.append(f"dbc = [{_toml_value(f'{name}.dbc')}]")
    lines.append(f"sources = [{_toml_value('learnt from OBD-II answers: see REPORT.md')}]")
    return "\n".join(lines) + "\n"


def signal_map_text(name: str, findings: list[Finding]) -> str:
    lines = ["# Broadcast signals learnt for this car, best first; OBD-II answers remain the fallback."]
    lines += [f"{f.quantity} = [{_toml_value(signal_source(name, f))}]" for f in findings]
    return "\n".join(lines) + "\n"


def report_text(name: str, logs: list[str], evidence: Evidence, findings: list[Finding],
                missing: list[Missing]) -> str:
    found = [f for f in findings if f.found]
    weak = [f for f in findings if not f.found]
    lines = [f"# {name}: what `firmware-bridge learn` found", "",
             f"Learnt {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {', '.join(logs)}: {evidence.frames:,} "
             f"frames, {len(evidence.ids)} broadcast frame IDs, {evidence.obd_answers:,} OBD-II answers.", ""]
    if found:
        lines += ["| quantity | frame | start bit | length | byte order | signed | scale | offset | RMSE | R² | "
                  "coverage | margin | confidence | next best |", "|" + "---|" * 14]
        for f in found:
            lo = f.layout
            lines.append(f"| {f.quantity} | 0x{lo.frame_id:X} | {lo.start_bit} | {lo.length} | {lo.byte_order} | "
                         f"{'yes' if lo.signed else 'no'} | {f.scale:g} | {f.offset:g} | {f.fit_rmse:.4g} | "
                         f"{f.r2:.5f} | {f.coverage:.2f} | {f.margin:.2f} | {f.confidence:.3f} | "
                         f"{f.runner_up or '—'} |")
        copies = [f"{f.quantity}: {', '.join(f.copies)}" for f in found if f.copies]
        if copies:
            lines += ["", "Also carrying the same values (not used): " + "; ".join(copies) + "."]
        lines += ["", "RMSE is against the OBD-II answers in the quantity's unit (an answer in whole km/h alone "
                  "accounts for about 0.29). Coverage: share of answers with a frame of that ID under 2 s old. "
                  "Margin: how much lower the RMSE is than that of the best other candidate. Confidence = R² × "
                  "coverage × evidence (answers, full from 100) × separation (margin, full from 20 %)."]
    else:
        lines.append("Nothing found: too little evidence for any quantity.")
    if weak or missing:
        lines += ["", "Not learnt:", ""]
        lines += [f"- {f.quantity}: best candidate 0x{f.layout.frame_id:X} fits with R² {f.r2:.3f}, confidence "
                  f"{f.confidence:.2f}: too weak to use" for f in weak]
        lines += [f"- {m.quantity}: {m.reason}" for m in missing]
    lines += ["", f"Use it: `firmware-bridge stats LOG --vehicle path/to/{name}` (no `--obd` needed on the road)."]
    return "\n".join(lines) + "\n"


def write_folder(out_dir: str | Path, name: str, logs: list[str], evidence: Evidence, findings: list[Finding],
                 missing: list[Missing]) -> list[Path]:
    """The car folder DIR/NAME with the findings that are good enough; the paths written."""
    found = [f for f in findings if f.found]
    folder = Path(out_dir) / check_name(name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the car folder: {exc.strerror}") from None
    paths = {"profile.toml": profile_text(name, logs), f"{name}.dbc": None,
             "signal_map.toml": signal_map_text(name, found),
             "REPORT.md": report_text(name, logs, evidence, findings, missing)}
    written = []
    for file_name, text in paths.items():
        path = folder / file_name
        if text is None:
            cantools.database.dump_file(database(name, found, evidence), str(path), database_format="dbc")
        else:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
