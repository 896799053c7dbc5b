"""The simulated engine ECU's OBD-II responder, encoded by hand from the SAE J1979 formulas: mode 01 data, and
the diagnostic services (02 freeze frame, 03/07/0A trouble codes, 04 clear, 09 VIN and calibration IDs) from a
configurable `EcuDiagnostics`, over 11-bit or 29-bit CAN identifiers.

Deliberately independent of any DBC: tests decode these bytes with `dbc/obd2.dbc`, so an error in either side
shows up as a disagreement instead of cancelling out. Formulas: SAE J1979 mode 01.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import can

from firmware_bridge.obd import ids
from firmware_bridge.sim.car import CarState, KeiCar

OBD_FUNCTIONAL_REQUEST_ID = 0x7DF
SERVICE_CURRENT_DATA = 0x01
POSITIVE_RESPONSE_OFFSET = 0x40
PAD_BYTE = 0x55
FRAME_LENGTH = 8
#: ISO 15765-2 frame types (high nibble of the first byte) and what fits in one single frame.
_FIRST_FRAME = 0x10
_CONSECUTIVE_FRAME = 0x20
_FLOW_CONTROL = 0x3
_SINGLE_FRAME_MAX_BYTES = FRAME_LENGTH - 1
_FIRST_FRAME_DATA_BYTES = FRAME_LENGTH - 2
#: Support bitmap PIDs sit every 0x20 PIDs: 0x00, 0x20, 0x40, ... each covering the next 32.
BITMAP_STRIDE = 0x20


@dataclass(frozen=True)
class _PidEncoding:
    """raw = round((value + offset) * raw_per_unit), big-endian over n_bytes (J1979: A is the MSB)."""

    value: Callable[[CarState], float]
    raw_per_unit: float
    n_bytes: int
    offset: float = 0.0


_TEMPERATURE_OFFSET_C = 40.0
_HALF_STEP_EPS = 1e-9
_PERCENT_RAW_PER_UNIT = 255.0 / 100.0

#: Data PIDs this ECU can answer, one line per J1979 formula.
_ENCODINGS: dict[int, _PidEncoding] = {
    # 0x03: A = fuel system 1 status, B = system 2 (none): A * 256 puts the status code in byte A.
    0x03: _PidEncoding(lambda s: s.fuel_system_status, 256.0, 2),
    0x04: _PidEncoding(lambda s: s.engine_load_pct, _PERCENT_RAW_PER_UNIT, 1),
    0x05: _PidEncoding(lambda s: s.coolant_c, 1.0, 1, _TEMPERATURE_OFFSET_C),
    0x0B: _PidEncoding(lambda s: s.map_kpa, 1.0, 1),
    0x0C: _PidEncoding(lambda s: s.engine_rpm, 4.0, 2),
    0x0D: _PidEncoding(lambda s: s.speed_kmh, 1.0, 1),
    0x0F: _PidEncoding(lambda s: s.iat_c, 1.0, 1, _TEMPERATURE_OFFSET_C),
    0x10: _PidEncoding(lambda s: s.maf_gps, 100.0, 2),
    0x11: _PidEncoding(lambda s: s.throttle_pct, _PERCENT_RAW_PER_UNIT, 1),
    0x1F: _PidEncoding(lambda s: s.run_time_s, 1.0, 2),
    0x2F: _PidEncoding(lambda s: s.fuel_level_pct, _PERCENT_RAW_PER_UNIT, 1),
    0x33: _PidEncoding(lambda s: s.baro_kpa, 1.0, 1),
    0x42: _PidEncoding(lambda s: s.battery_v, 1000.0, 2),
    0x44: _PidEncoding(lambda s: s.lambda_, 65536.0 / 2.0, 2),
    0x46: _PidEncoding(lambda s: s.ambient_c, 1.0, 1, _TEMPERATURE_OFFSET_C),
    0x5E: _PidEncoding(lambda s: s.fuel_rate_lph, 20.0, 2),
    0xA6: _PidEncoding(lambda s: s.odometer_km, 10.0, 4),
}

_BASE_PIDS = (0x01, 0x03, 0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0F, 0x11, 0x1F, 0x2F, 0x33, 0x42, 0x46, 0xA6)


def with_support_bitmaps(data_pids: Iterable[int]) -> frozenset[int]:
    """Add the bitmap PIDs a scan tool must walk to find data_pids: 0x00 always, 0x20*k when any PID > 0x20*k."""
    data = frozenset(data_pids)
    highest = max(data, default=0)
    return data | frozenset(range(0, highest, BITMAP_STRIDE))


#: What the simulated ECU answers, support bitmaps included. "map" is the kei default: speed-density, no MAF.
PID_SETS: dict[str, frozenset[int]] = {
    "map": with_support_bitmaps(_BASE_PIDS),
    "maf": with_support_bitmaps((*_BASE_PIDS, 0x10, 0x44)),
    "fuel_rate": with_support_bitmaps((*_BASE_PIDS, 0x10, 0x44, 0x5E)),
}


def resolve_pid_set(pid_set: str | Iterable[int]) -> frozenset[int]:
    """A PID_SETS name, or explicit PIDs (support bitmaps added)."""
    if isinstance(pid_set, str):
        if pid_set not in PID_SETS:
            raise ValueError(f"unknown PID set {pid_set!r}; known: {', '.join(PID_SETS)}")
        return PID_SETS[pid_set]
    return with_support_bitmaps(pid for pid in pid_set if pid % BITMAP_STRIDE)


def support_bitmap(base_pid: int, supported: frozenset[int]) -> int:
    """32-bit bitmap for PIDs base+1 .. base+32: bit 31 (A's MSB) = base+1, bit 0 = base+32."""
    bitmap = 0
    for offset in range(1, BITMAP_STRIDE + 1):
        if base_pid + offset in supported:
            bitmap |= 1 << (BITMAP_STRIDE - offset)
    return bitmap


def _round_clamped(value: float, n_bytes: int) -> int:
    """Nearest raw step (half up, not truncated), clamped to what the bytes can hold.

    The epsilon keeps exact halves exact: 50 % * 2.55 is 127.49999999999999 in binary floating point.
    """
    raw = math.floor(value + 0.5 + _HALF_STEP_EPS)
    return min(max(raw, 0), (1 << (8 * n_bytes)) - 1)


def _pid_data(pid: int, state: CarState, supported: frozenset[int], status: bytes | None = None) -> bytes:
    """The data bytes A, B, ... of a supported PID (`status`: PID 01's, else that of an ECU without codes)."""
    if pid % BITMAP_STRIDE == 0:
        return support_bitmap(pid, supported).to_bytes(4, "big")
    if pid == _MONITOR_STATUS_PID:
        return status or bytes((0, *_READINESS))
    encoding = _ENCODINGS[pid]
    raw = _round_clamped((encoding.value(state) + encoding.offset) * encoding.raw_per_unit, encoding.n_bytes)
    return raw.to_bytes(encoding.n_bytes, "big")


def encode_response(pid: int, state: CarState, pid_set: str | Iterable[int] = "map") -> bytes | None:
    """8-byte mode 01 single frame `[n, 0x41, pid, A, B, ..., 0x55 pad]`, or None if pid_set lacks the PID."""
    supported = resolve_pid_set(pid_set)
    if pid not in supported:
        return None
    payload = bytes((SERVICE_CURRENT_DATA + POSITIVE_RESPONSE_OFFSET, pid)) + _pid_data(pid, state, supported)
    [frame] = iso_tp_frames(payload)
    return frame


def iso_tp_frames(payload: bytes) -> list[bytes]:
    """ISO 15765-2 framing of one answer: a single frame up to 7 bytes, else a first frame and consecutive ones."""
    if len(payload) <= _SINGLE_FRAME_MAX_BYTES:
        frames = [bytes((len(payload),)) + payload]
    else:
        frames = [bytes((_FIRST_FRAME | len(payload) >> 8, len(payload) & 0xFF)) + payload[:_FIRST_FRAME_DATA_BYTES]]
        rest = payload[_FIRST_FRAME_DATA_BYTES:]
        for i, start in enumerate(range(0, len(rest), _SINGLE_FRAME_MAX_BYTES), 1):
            frames.append(bytes((_CONSECUTIVE_FRAME | i & 0x0F,)) + rest[start:start + _SINGLE_FRAME_MAX_BYTES])
    return [frame + bytes((PAD_BYTE,)) * (FRAME_LENGTH - len(frame)) for frame in frames]


def obd_request(pid: int, timestamp: float = 0.0, arbitration_id: int = OBD_FUNCTIONAL_REQUEST_ID) -> can.Message:
    """A scan tool's mode 01 request for one PID: `02 01 PID 55 55 55 55 55`."""
    data = bytes((2, SERVICE_CURRENT_DATA, pid)) + bytes((PAD_BYTE,)) * 5
    return can.Message(
        timestamp=timestamp, arbitration_id=arbitration_id, is_extended_id=False, data=data, is_rx=False
    )


_MONITOR_STATUS_PID = 0x01
_DTC_LETTERS = "PCBU"
_SERVICE_FREEZE_FRAME, _SERVICE_CLEAR, _SERVICE_VEHICLE_INFO = 0x02, 0x04, 0x09
_CODE_SERVICES = {0x03: "stored", 0x07: "pending", 0x0A: "permanent"}
_FREEZE_DTC_PID = 0x02
_INFO_VIN, _INFO_CALIBRATION_IDS = 0x02, 0x04
_CALIBRATION_ID_BYTES = 16
#: PID 01 bytes B-D: spark ignition; misfire, fuel system and components monitors supported and complete;
#: catalyst, evaporative system, oxygen sensor and heater supported, the evaporative test not yet complete.
_READINESS = (0x07, 0x65, 0x04)


def dtc_bytes(code: str) -> bytes:
    """`P0115` -> 01 15 (SAE J2012: the letter in bits 15-14, then the four digits)."""
    value = _DTC_LETTERS.index(code[0]) << 14 | int(code[1]) << 12 | int(code[2:], 16)
    return value.to_bytes(2, "big")


@dataclass
class EcuDiagnostics:
    """What the simulated ECU reports; the ground truth of the diagnostics tests. Mode 04 clears stored and
    pending codes (permanent ones stay, as on a real car); the MIL is on while a stored code is."""

    stored: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    permanent: list[str] = field(default_factory=list)
    vin: str = "KEISIM0000SIM0001"
    calibration_ids: list[str] = field(default_factory=lambda: ["KEISIM-ECU-0001"])

    @property
    def mil_on(self) -> bool:
        return bool(self.stored)

    def monitor_status(self) -> bytes:
        return bytes((0x80 * self.mil_on | len(self.stored), *_READINESS))


class ObdResponder:
    """The engine ECU on the bus: answers functional and its own physical requests (11-bit 0x7DF / 0x7E0, or
    29-bit 0x18DB33F1 / 0x18DA10F1 when its answer ID is 29-bit, e.g. 0x18DAF110)."""

    def __init__(self, car: KeiCar, pid_set: str | Iterable[int] = "map", ecu_tx_id: int = 0x7E8,
                 diagnostics: EcuDiagnostics | None = None) -> None:
        self.car = car
        self.supported = resolve_pid_set(pid_set)
        self.ecu_tx_id = ecu_tx_id
        self.extended = ecu_tx_id > 0x7FF
        self.diagnostics = diagnostics or EcuDiagnostics()
        self._physical_id = ids.response_to_physical_request(ecu_tx_id, self.extended)
        functional = ids.FUNCTIONAL_29BIT if self.extended else ids.FUNCTIONAL_11BIT
        self._request_ids = (functional, self._physical_id)
        self._unsent: list[bytes] = []  # consecutive frames waiting for the tester's flow control
        #: The car when the first stored code's freeze frame was taken (the first time one was asked for).
        self.freeze_state: CarState | None = None

    def _request_payload(self, request: can.Message) -> bytes | None:
        """A single-frame request to this ECU (`0N s ..`): its payload, else None."""
        if request.is_extended_id != self.extended or request.is_error_frame or request.is_remote_frame:
            return None
        if request.arbitration_id not in self._request_ids:
            return None
        data = bytes(request.data)
        if not data or not 1 <= data[0] <= 7 or len(data) <= data[0]:
            return None
        return data[1:1 + data[0]]

    def requested_pids(self, request: can.Message) -> list[int] | None:
        """The mode 01 PIDs asked for (1 to 6), or None for anything that is not a request to this ECU."""
        payload = self._request_payload(request)
        if payload is None or len(payload) < 2 or payload[0] != SERVICE_CURRENT_DATA:
            return None
        return list(payload[1:])

    def requested_pid(self, request: can.Message) -> int | None:
        """The (first) mode 01 PID asked for, or None for anything that is not a request to this ECU."""
        asked = self.requested_pids(request)
        return asked[0] if asked else None

    def respond(self, request: can.Message, t_s: float) -> can.Message | None:
        """Answer at drive time t_s; silent when asleep (ignition off) or the PID is unsupported."""
        pid = self.requested_pid(request)
        if pid is None or pid not in self.supported:
            return None
        state = self.car.advance_to(t_s)
        if not state.ignition:
            return None
        [data] = iso_tp_frames(self.answer(bytes((SERVICE_CURRENT_DATA, pid)), state))
        return self._message(request, data)

    def respond_frames(self, request: can.Message, t_s: float) -> list[can.Message]:
        """Answer like a real ECU: every supported PID asked (up to 6) in one answer, a single frame when it
        fits in 7 bytes, else the first frame now and the consecutive frames once flow control arrives;
        the diagnostic services likewise."""
        if self._is_flow_control(request):
            block = request.data[1] or len(self._unsent)  # block size 0: all the rest
            sent, self._unsent = self._unsent[:block], self._unsent[block:]
            return [self._message(request, frame) for frame in sent]
        asked = self._request_payload(request)
        if not asked:
            return []
        state = self.car.advance_to(t_s)
        if not state.ignition:
            return []
        payload = self.answer(asked, state)
        if payload is None:
            return []
        first, *self._unsent = iso_tp_frames(payload)
        return [self._message(request, first)]

    def answer(self, asked: bytes, state: CarState) -> bytes | None:
        """The whole answer payload to a request payload (None: not answered)."""
        service = asked[0]
        reply = bytes((service + POSITIVE_RESPONSE_OFFSET,))
        if service == SERVICE_CURRENT_DATA:
            found = [pid for pid in asked[1:] if pid in self.supported]
            if not found:
                return None
            status = self.diagnostics.monitor_status()
            return reply + b"".join(bytes((pid,)) + _pid_data(pid, state, self.supported, status) for pid in found)
        diagnostics = self.diagnostics
        if service in _CODE_SERVICES:
            codes = getattr(diagnostics, _CODE_SERVICES[service])
            return reply + bytes((len(codes),)) + b"".join(map(dtc_bytes, codes))
        if service == _SERVICE_CLEAR:
            diagnostics.stored.clear()
            diagnostics.pending.clear()
            self.freeze_state = None
            return reply
        if service == _SERVICE_FREEZE_FRAME and len(asked) >= 3:
            return self._freeze_frame(asked[1], state, reply)
        if service == _SERVICE_VEHICLE_INFO and len(asked) >= 2:
            return self._vehicle_info(asked[1], reply)
        return None

    def _freeze_frame(self, pid: int, state: CarState, reply: bytes) -> bytes | None:
        if not self.diagnostics.stored:
            return reply + bytes((pid, 0)) + bytes(2) if pid == _FREEZE_DTC_PID else None
        if self.freeze_state is None:
            self.freeze_state = state
        if pid == _FREEZE_DTC_PID:
            return reply + bytes((pid, 0)) + dtc_bytes(self.diagnostics.stored[0])
        frozen = self.supported - {_MONITOR_STATUS_PID} | {_FREEZE_DTC_PID}
        if pid not in frozen:
            return None
        return reply + bytes((pid, 0)) + _pid_data(pid, self.freeze_state, frozen)

    def _vehicle_info(self, info: int, reply: bytes) -> bytes | None:
        if info == 0x00:
            return reply + bytes((info,)) + support_bitmap(0, frozenset((_INFO_VIN, _INFO_CALIBRATION_IDS))).to_bytes(4, "big")
        if info == _INFO_VIN:
            return reply + bytes((info, 1)) + self.diagnostics.vin.encode("ascii")
        if info == _INFO_CALIBRATION_IDS:
            cal_ids = self.diagnostics.calibration_ids
            return reply + bytes((info, len(cal_ids))) + b"".join(
                c.encode("ascii").ljust(_CALIBRATION_ID_BYTES, b"\x00") for c in cal_ids)
        return None

    def _is_flow_control(self, msg: can.Message) -> bool:
        return (msg.arbitration_id == self._physical_id and msg.is_extended_id == self.extended
                and len(msg.data) >= 3 and msg.data[0] >> 4 == _FLOW_CONTROL and msg.data[0] & 0x0F == 0
                and bool(self._unsent))

    def _message(self, request: can.Message, data: bytes) -> can.Message:
        return can.Message(timestamp=request.timestamp, arbitration_id=self.ecu_tx_id, is_extended_id=self.extended,
                           data=data, channel=request.channel)
