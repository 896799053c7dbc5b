"""OBD-II mode 01 request and response framing (ISO 15765-4 single frames, SAE J1979 service 01).

Only what the poller needs to talk; decoding the values is the DBC's job (dbc/obd2.dbc). Multi-frame answers
and their split into single-PID frames live in obd/isotp.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import can

from firmware_bridge.obd import ids

FUNCTIONAL_REQUEST_ID = ids.FUNCTIONAL_11BIT
SERVICE_01 = 0x01
POSITIVE_RESPONSE_OFFSET = 0x40
#: A negative answer `7F <service> <code>`; code 0x78: "request received, response pending" (ISO 14229-1).
NEGATIVE_RESPONSE = 0x7F
RESPONSE_PENDING = 0x78
PADDING = 0x55
SUPPORT_BITMAP_PIDS = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0)
#: SAE J1979: one mode 01 request may ask for up to six PIDs.
MAX_PIDS_PER_REQUEST = 6


def _by_length(groups: dict[int, tuple[int, ...]]) -> dict[int, int]:
    return {pid: n for n, pid_list in groups.items() for pid in pid_list}


#: Data bytes (A, B, ...) after the PID in a mode 01 answer, SAE J1979 mode 01; what a
#: multi-PID answer is cut by. PIDs missing here make an answer unsplittable, never misread.
DATA_BYTES: dict[int, int] = _by_length({
    1: (0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0D, 0x0E, 0x0F, 0x11, 0x12, 0x13, 0x1C, 0x1D, 0x1E,
        0x2C, 0x2D, 0x2E, 0x2F, 0x30, 0x33, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x51, 0x52, 0x5A,
        0x5B, 0x5C, 0x5F, 0x61, 0x62),
    2: (0x02, 0x03, 0x0C, 0x10, *range(0x14, 0x1C), 0x1F, 0x21, 0x22, 0x23, 0x31, 0x32, *range(0x3C, 0x40),
        0x42, 0x43, 0x44, 0x4D, 0x4E, *range(0x53, 0x5A), 0x5D, 0x5E, 0x63),
    4: (*SUPPORT_BITMAP_PIDS, 0x01, *range(0x24, 0x2C), *range(0x34, 0x3C), 0x41, 0x4F, 0x50, 0xA6),
})

#: PIDs the bundled DBC decodes, by what the analytics need them for (SAE J1979 mode 01).
SPEED_RPM_PIDS = (0x0D, 0x0C)
THROTTLE_PID = 0x11
FUEL_RATE_PID = 0x5E
MAF_PID = 0x10
MAP_PID = 0x0B
FUEL_CUT_PIDS = (0x03, 0x04)  # fuel system status and load: tell a deceleration fuel cut from enrichment
LAMBDA_PID = 0x44
SLOW_PIDS = (0x05, 0x0F, 0x2F, 0x42, 0x46, 0x33, 0x5C, 0xA6, 0x1F, 0x06, 0x07)


def request(pid: int, arbitration_id: int = FUNCTIONAL_REQUEST_ID, timestamp: float = 0.0) -> can.Message:
    return request_many((pid,), arbitration_id, timestamp)


def request_many(pid_list: Sequence[int], arbitration_id: int = FUNCTIONAL_REQUEST_ID,
                 timestamp: float = 0.0) -> can.Message:
    """One single-frame mode 01 request for 1 to 6 PIDs: `0N 01 p1 .. pk` padded to 8 bytes."""
    if not 1 <= len(pid_list) <= MAX_PIDS_PER_REQUEST:
        raise ValueError(f"a mode 01 request asks 1 to {MAX_PIDS_PER_REQUEST} PIDs, not {len(pid_list)}")
    return request_frame(bytes((SERVICE_01, *pid_list)), arbitration_id, timestamp)


def request_frame(payload: bytes, arbitration_id: int = FUNCTIONAL_REQUEST_ID, timestamp: float = 0.0) -> can.Message:
    """A single-frame request of any service: `0N s ..` padded to 8 bytes."""
    data = [len(payload), *payload]
    return can.Message(arbitration_id=arbitration_id, is_extended_id=ids.is_extended_request(arbitration_id),
                       data=data + [PADDING] * (8 - len(data)), timestamp=timestamp)


def response_pid(msg: can.Message) -> int | None:
    """The PID a mode 01 positive single-frame response answers, or None for any other frame."""
    data = msg.data
    if (ids.is_response(msg.arbitration_id, msg.is_extended_id) and len(data) >= 3 and data[0] <= 7
            and data[1] == SERVICE_01 + POSITIVE_RESPONSE_OFFSET):
        return data[2]
    return None


def supported_from_bitmap(base_pid: int, data: bytes) -> set[int]:
    """PIDs a support-bitmap answer (PID 0x00, 0x20, ...) lists: bit 31 of A..D is PID base+1."""
    bits = int.from_bytes(bytes(data[3:7]), "big")
    return {base_pid + 1 + i for i in range(32) if bits & (1 << (31 - i))}


def fast_and_slow(supported: set[int]) -> tuple[list[int], list[int]]:
    """Which supported PIDs to poll fast (several times a second) and slow (every few seconds).

    Fast: speed, rpm, throttle and what the best available fuel source needs — 0x5E alone; else MAF with the
    fuel-cut and lambda PIDs; else MAP with the fuel-cut PIDs (the kei speed-density case).
    """
    if FUEL_RATE_PID in supported:
        fuel = [FUEL_RATE_PID]
    elif MAF_PID in supported:
        fuel = [MAF_PID, *FUEL_CUT_PIDS, LAMBDA_PID]
    else:
        fuel = [MAP_PID, *FUEL_CUT_PIDS]
    fast = [p for p in (*SPEED_RPM_PIDS, *fuel, THROTTLE_PID) if p in supported]
    slow = [p for p in (*SLOW_PIDS, MAP_PID, MAF_PID, *FUEL_CUT_PIDS, LAMBDA_PID) if p in supported and p not in fast]
    return fast, slow
