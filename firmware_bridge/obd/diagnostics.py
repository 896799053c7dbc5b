"""OBD-II diagnostics, read-only unless the user says otherwise: MIL, trouble-code count and readiness monitors
(mode 01 PID 01), stored, pending and permanent trouble codes (modes 03, 07, 0A) with the ECU that reported each,
the freeze frame of the first code (mode 02), VIN and calibration IDs (mode 09); clearing (mode 04) only on
request.

Everything works on whole answers per ECU, as `ObdPoller.exchange` gives them, whatever carried them: ISO-TP over
CAN (a mode 03 answer is one message `43 <count> <codes>`, a VIN one 20-byte message), or K-line/J1850 through
an ELM327 (no count byte, three codes per message; a VIN in five 4-byte messages). Formats: SAE J1979 /
ISO 15031-5; the code letters and digits: SAE J2012.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import cantools

from firmware_bridge.obd import pids
from firmware_bridge.obd.codes import describe
from firmware_bridge.records import Point

log = logging.getLogger(__name__)

SERVICE_FREEZE_FRAME = 0x02
SERVICE_STORED = 0x03
SERVICE_CLEAR = 0x04
SERVICE_PENDING = 0x07
SERVICE_VEHICLE_INFO = 0x09
SERVICE_PERMANENT = 0x0A
PID_MONITOR_STATUS = 0x01
PID_FREEZE_DTC = 0x02
INFO_VIN = 0x02
INFO_CALIBRATION_IDS = 0x04
CALIBRATION_ID_BYTES = 16
#: K-line and J1850 answers carry 4 data bytes per mode 09 message, after `49 <info> <message number>`.
_LEGACY_INFO_BYTES = 4
_DTC_LETTERS = "PCBU"
#: Readiness monitors by bit of PID 01 bytes C (supported) and D (incomplete), spark or compression ignition
#: (SAE J1979 PID 01; byte B bit 3 says which); bits 0-2 of byte B (supported) and 4-6 (incomplete) are common.
_COMMON_MONITORS = ("misfire", "fuel_system", "components")
_SPARK_MONITORS = ("catalyst", "heated_catalyst", "evaporative_system", "secondary_air", "ac_refrigerant",
                   "oxygen_sensor", "oxygen_sensor_heater", "egr_system")
_COMPRESSION_MONITORS = ("nmhc_catalyst", "nox_scr_monitor", None, "boost_pressure", None, "exhaust_gas_sensor",
                         "pm_filter", "egr_vvt_system")

#: An exchange: one request payload out, every ECU's whole answers back as (ECU, payload).
Exchange = Callable[[bytes], list[tuple[str, bytes]]]


class TroubleCode(NamedTuple):
    code: str
    ecu: str


@dataclass
class Diagnostics:
    """What `firmware-bridge dtc` prints (`as_dict` is its JSON contract)."""

    vin: str | None = None
    mil_on: bool | None = None
    dtc_count: int | None = None
    stored: list[TroubleCode] = field(default_factory=list)
    pending: list[TroubleCode] = field(default_factory=list)
    permanent: list[TroubleCode] = field(default_factory=list)
    freeze_frame: dict = field(default_factory=dict)
    readiness: dict[str, str] = field(default_factory=dict)
    calibration_ids: list[str] = field(default_factory=list)
    ecus: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        def codes(found):
            return [{"code": c.code, "ecu": c.ecu} for c in found]

        return {"vin": self.vin, "mil_on": self.mil_on, "dtc_count": self.dtc_count, "stored": codes(self.stored),
                "pending": codes(self.pending), "permanent": codes(self.permanent),
                "freeze_frame": self.freeze_frame, "readiness": self.readiness}


def dtc_code(two: bytes) -> str:
    """Two bytes as a trouble code: bits 15-14 the letter (P, C, B, U), then four hex digits (`01 15` -> P0115)."""
    a, b = two[0], two[1]
    return f"{_DTC_LETTERS[a >> 6]}{(a >> 4) & 0x3}{a & 0xF:X}{b:02X}"


def codes_in(payload: bytes) -> list[str]:
    """The codes of a 43/47/4A answer. Over CAN it starts with a count byte (so its length is even, 2 + 2n);
    over K-line and J1850 it does not (1 + 6: three codes per message). `00 00` is padding."""
    body = payload[2:] if len(payload) % 2 == 0 else payload[1:]
    return [dtc_code(body[i:i + 2]) for i in range(0, len(body) - 1, 2) if body[i:i + 2] != b"\x00\x00"]


def info_bytes(payloads: list[bytes]) -> bytes:
    """The data of one ECU's mode 09 answer: one ISO-TP message `49 <info> <count> data..` over CAN, or
    numbered 4-byte messages `49 <info> <n> d1 d2 d3 d4` over K-line/J1850, joined in order."""
    if len(payloads) == 1 and len(payloads[0]) != 3 + _LEGACY_INFO_BYTES:
        return payloads[0][3:]
    return b"".join(p[3:3 + _LEGACY_INFO_BYTES] for p in sorted(payloads, key=lambda p: p[2] if len(p) > 2 else 0))


def _text(data: bytes) -> str:
    return data.replace(b"\x00", b"").decode("ascii", "replace").strip()


def readiness(b: int, c: int, d: int) -> dict[str, str]:
    """Supported monitors of PID 01 bytes B-D: "complete" or "incomplete"."""
    result = {}
    for bit, name in enumerate(_COMMON_MONITORS):
        if b >> bit & 1:
            result[name] = "incomplete" if b >> (bit + 4) & 1 else "complete"
    for bit, name in enumerate(_COMPRESSION_MONITORS if b & 0x08 else _SPARK_MONITORS):
        if name is not None and c >> bit & 1:
            result[name] = "incomplete" if d >> bit & 1 else "complete"
    return result


def _positive(answers: list[tuple[str, bytes]], *head: int) -> dict[str, list[bytes]]:
    """Positive answers starting with `head` (service + 0x40, then PIDs), by ECU in ID order."""
    wanted = bytes(head)
    by_ecu: dict[str, list[bytes]] = {}
    for ecu, payload in sorted(answers, key=lambda a: (len(a[0]), a[0])):
        if payload.startswith(wanted):
            by_ecu.setdefault(ecu, []).append(payload)
    return by_ecu


def _answer(service: int) -> int:
    return service + pids.POSITIVE_RESPONSE_OFFSET


def read_codes(exchange: Exchange, service: int) -> list[TroubleCode]:
    found = []
    for ecu, payloads in _positive(exchange(bytes((service,))), _answer(service)).items():
        for payload in payloads:
            found += [TroubleCode(code, ecu) for code in codes_in(payload) if TroubleCode(code, ecu) not in found]
    return found


def read_info(exchange: Exchange, info: int) -> dict[str, bytes]:
    """A mode 09 item (VIN, calibration IDs) by ECU."""
    return {ecu: info_bytes(payloads) for ecu, payloads in
            _positive(exchange(bytes((SERVICE_VEHICLE_INFO, info))), _answer(SERVICE_VEHICLE_INFO), info).items()}


class FreezeFrameDecoder:
    """Freeze-frame values by the mode 01 signals of the bundled OBD-II DBC (a mode 02 answer `42 PID 00 A..`
    carries the same bytes as the mode 01 answer `41 PID A..`)."""

    def __init__(self, db: cantools.database.Database) -> None:
        self.message = db.get_message_by_name("OBD2_RESPONSE")
        self.pids = {pid for s in self.message.signals if s.multiplexer_signal == "pid"
                     and not s.name.startswith("pids_supported") for pid in s.multiplexer_ids or ()}

    def decode(self, pid: int, data: bytes) -> dict[str, float]:
        body = bytes((2 + len(data), _answer(pids.SERVICE_01), pid)) + data
        try:
            signals = self.message.decode(body + bytes(8 - len(body)), decode_choices=False)
        except (cantools.database.DecodeError, ValueError):
            return {}
        return {k: v for k, v in signals.items() if k not in ("length", "service", "pid")
                and not k.startswith("pids_supported")}


def read_freeze_frame(exchange: Exchange, decoder: FreezeFrameDecoder | None) -> dict:
    """The engine ECU's freeze frame 0: the code that stored it, and what the DBC decodes of its PIDs."""
    ecu_answers = _positive(exchange(bytes((SERVICE_FREEZE_FRAME, PID_FREEZE_DTC, 0))),
                            _answer(SERVICE_FREEZE_FRAME), PID_FREEZE_DTC)
    ecu, payloads = next(iter(ecu_answers.items()), (None, [b""]))
    data = payloads[0][3:5]
    if ecu is None or len(data) < 2 or data == b"\x00\x00":
        return {}
    frame: dict = {"dtc": dtc_code(data), "ecu": ecu}
    if decoder is None:
        return frame
    bitmaps = _positive(exchange(bytes((SERVICE_FREEZE_FRAME, 0x00, 0))), _answer(SERVICE_FREEZE_FRAME), 0x00)
    bitmap = bitmaps.get(ecu, [b""])[0]
    if len(bitmap) < 7:
        return frame
    supported = pids.supported_from_bitmap(0x00, bitmap)
    for pid in sorted(supported & decoder.pids - {PID_FREEZE_DTC}):
        answers = _positive(exchange(bytes((SERVICE_FREEZE_FRAME, pid, 0))), _answer(SERVICE_FREEZE_FRAME), pid)
        if ecu in answers:
            frame.update(decoder.decode(pid, answers[ecu][0][3:]))
    return frame


def read_diagnostics(exchange: Exchange, freeze_frame: FreezeFrameDecoder | None = None) -> Diagnostics:
    """Everything `dtc` shows, read with a dozen or so requests (read-only services only)."""
    result = Diagnostics()
    status = _positive(exchange(bytes((pids.SERVICE_01, PID_MONITOR_STATUS))), _answer(pids.SERVICE_01),
                       PID_MONITOR_STATUS)
    for ecu, payloads in status.items():
        a, b, c, d = (payloads[0][2:6] + bytes(4))[:4]
        result.ecus.append(ecu)
        result.mil_on = bool(result.mil_on) or bool(a & 0x80)
        result.dtc_count = (result.dtc_count or 0) + (a & 0x7F)
        if not result.readiness:
            result.readiness = readiness(b, c, d)
    result.stored = read_codes(exchange, SERVICE_STORED)
    result.pending = read_codes(exchange, SERVICE_PENDING)
    result.permanent = read_codes(exchange, SERVICE_PERMANENT)
    result.freeze_frame = read_freeze_frame(exchange, freeze_frame)
    vins = [_text(data) for data in read_info(exchange, INFO_VIN).values()]
    result.vin = next((vin for vin in vins if vin), None)
    for data in read_info(exchange, INFO_CALIBRATION_IDS).values():
        chunks = (data[i:i + CALIBRATION_ID_BYTES] for i in range(0, len(data), CALIBRATION_ID_BYTES))
        result.calibration_ids += [text for text in map(_text, chunks) if text]
    return result


def clear_codes(exchange: Exchange) -> list[str]:
    """Mode 04: the ECUs that confirmed clearing their codes, freeze frames and readiness."""
    return list(_positive(exchange(bytes((SERVICE_CLEAR,))), _answer(SERVICE_CLEAR)))


class DiagnosticsWatch:
    """The daemon's diagnostics: read by the poller at start and every few minutes (between polls, on the same
    paced sends); each change becomes an `event` point (kind `dtc` per code appearing or gone, kind `mil` when
    the check-engine light changes) and `summary` is the live view's note."""

    def __init__(self, emit: Callable[[Point], None] | None, vehicle_id: str,
                 freeze_frame: FreezeFrameDecoder | None = None) -> None:
        self.emit, self.vehicle_id, self.freeze_frame = emit, vehicle_id, freeze_frame
        self.last: Diagnostics | None = None
        self.summary: str | None = None

    def __call__(self, poller) -> None:
        found = read_diagnostics(poller.exchange, self.freeze_frame)
        if not found.ecus:
            return  # no answer this time: nothing is known to have changed
        t = poller.clock.now()
        for point in self.changes(self.last, found, t):
            log.warning("OBD-II: %s", _described(point))
            if self.emit is not None:
                self.emit(point)
        self.last = found
        codes = " ".join(c.code for c in found.stored) or "no stored codes"
        self.summary = f"MIL {'ON' if found.mil_on else 'off'}: {codes}"

    def changes(self, before: Diagnostics | None, now: Diagnostics, t: float) -> list[Point]:
        tags = {"vehicle": self.vehicle_id}
        points = []
        if now.mil_on != (before.mil_on if before else False):
            points.append(Point("event", t, {"mil_on": bool(now.mil_on), "dtc_count": int(now.dtc_count or 0)},
                                {**tags, "kind": "mil"}))
        for status in ("stored", "pending", "permanent"):
            old = set(getattr(before, status)) if before else set()
            new = set(getattr(now, status))
            for code, change in [*((c, "new") for c in sorted(new - old)), *((c, "gone") for c in sorted(old - new))]:
                points.append(Point("event", t, {"code": code.code, "ecu": code.ecu, "status": status,
                                                 "change": change}, {**tags, "kind": "dtc"}))
        return points


def _described(point: Point) -> str:
    f = point.fields
    if point.tags["kind"] == "mil":
        return f"check-engine light {'ON' if f['mil_on'] else 'off'} ({f['dtc_count']} code(s))"
    return f"{f['status']} trouble code {f['code']} ({describe(f['code'])}) from ECU {f['ecu']}: {f['change']}"
