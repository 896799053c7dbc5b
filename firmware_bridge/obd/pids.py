"""OBD-II mode 01 request and response framing (ISO 15765-4 single frames, SAE J1979 service 01).

Only what the poller needs to talk; decoding the values is the DBC's job (dbc/obd2.dbc).
"""

from __future__ import annotations

import can

FUNCTIONAL_REQUEST_ID = 0x7DF
RESPONSE_IDS = range(0x7E8, 0x7F0)
SERVICE_01 = 0x01
POSITIVE_RESPONSE_OFFSET = 0x40
PADDING = 0x55
SUPPORT_BITMAP_PIDS = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0)

#: PIDs the bundled DBC decodes, by what the analytics need them for (REFERENCE.md PID table).
SPEED_RPM_PIDS = (0x0D, 0x0C)
THROTTLE_PID = 0x11
FUEL_RATE_PID = 0x5E
MAF_PID = 0x10
MAP_PID = 0x0B
FUEL_CUT_PIDS = (0x03, 0x04)  # fuel system status and load: tell a deceleration fuel cut from enrichment
LAMBDA_PID = 0x44
SLOW_PIDS = (0x05, 0x0F, 0x2F, 0x42, 0x46, 0x33, 0x5C, 0xA6, 0x1F, 0x06, 0x07)


def request(pid: int, arbitration_id: int = FUNCTIONAL_REQUEST_ID, timestamp: float = 0.0) -> can.Message:
    return can.Message(arbitration_id=arbitration_id, is_extended_id=arbitration_id > 0x7FF,
                       data=[0x02, SERVICE_01, pid] + [PADDING] * 5, timestamp=timestamp)


def response_pid(msg: can.Message) -> int | None:
    """The PID a mode 01 positive response answers, or None for any other frame."""
    data = msg.data
    if msg.arbitration_id in RESPONSE_IDS and len(data) >= 3 and data[1] == SERVICE_01 + POSITIVE_RESPONSE_OFFSET:
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
