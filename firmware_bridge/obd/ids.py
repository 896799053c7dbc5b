"""Which CAN identifiers are OBD-II (ISO 15765-4): the one rule the poller, ISO-TP, the decoders and the bus
filters share.

11-bit: functional requests on 0x7DF, physical requests 0x7E0-0x7E7 to ECU n, answers 0x7E8-0x7EF from ECU n
(answer = request + 8). 29-bit (normal fixed addressing, ISO 15765-2): functional requests 0x18DB33F1,
physical requests 0x18DA<ecu>F1, answers 0x18DAF1<ecu>, with F1 the tester's address. A request may go out
only on one of those request IDs: nothing else is ever transmitted by the agent.
"""

from __future__ import annotations

import numpy as np

FUNCTIONAL_11BIT = 0x7DF
PHYSICAL_11BIT = range(0x7E0, 0x7E8)
RESPONSE_11BIT = range(0x7E8, 0x7F0)
PHYSICAL_TO_RESPONSE_11BIT = 8
FUNCTIONAL_29BIT = 0x18DB33F1
TESTER_ADDRESS = 0xF1
#: 18 DA <target> <source>: the 29-bit physical frame between the tester (F1) and an ECU.
_PHYSICAL_29BIT_BASE = 0x18DA0000
_RESPONSE_29BIT_MASK = 0x1FFFFF00
RESPONSE_29BIT_BASE = _PHYSICAL_29BIT_BASE | TESTER_ADDRESS << 8  # 0x18DAF100


def is_response(frame_id: int, is_extended: bool) -> bool:
    """An ECU's diagnostic answer: 0x7E8-0x7EF, or 29-bit 0x18DAF1xx."""
    if is_extended:
        return frame_id & _RESPONSE_29BIT_MASK == RESPONSE_29BIT_BASE
    return frame_id in RESPONSE_11BIT


def is_request(frame_id: int, is_extended: bool) -> bool:
    """A tester's request: functional 0x7DF / 0x18DB33F1, or physical 0x7E0-0x7E7 / 0x18DA<ecu>F1."""
    if is_extended:
        return frame_id == FUNCTIONAL_29BIT or (
            frame_id & 0x1FFF00FF == _PHYSICAL_29BIT_BASE | TESTER_ADDRESS and (frame_id >> 8) & 0xFF
            != TESTER_ADDRESS)
    return frame_id == FUNCTIONAL_11BIT or frame_id in PHYSICAL_11BIT


def is_extended_request(frame_id: int) -> bool:
    """Whether a request ID (see `is_request`) is a 29-bit one; IDs above 0x7FF can only be."""
    return frame_id > 0x7FF


def check_request_id(frame_id: object) -> int:
    """The request ID if the agent may send on it, else ValueError saying which IDs are allowed."""
    if isinstance(frame_id, bool) or not isinstance(frame_id, int) or not is_request(
            frame_id, is_extended_request(frame_id)):
        shown = f"0x{frame_id:X}" if isinstance(frame_id, int) and frame_id >= 0 else repr(frame_id)
        raise ValueError(f"{shown} is not an OBD-II request ID (0x7DF, 0x7E0-0x7E7, 0x18DB33F1, 0x18DAxxF1)")
    return frame_id


def response_to_physical_request(frame_id: int, is_extended: bool) -> int:
    """The physical request ID that reaches the ECU behind an answer ID (where its flow control goes)."""
    if is_extended:  # 18 DA F1 <ecu> answers 18 DA <ecu> F1
        return _PHYSICAL_29BIT_BASE | (frame_id & 0xFF) << 8 | TESTER_ADDRESS
    return frame_id - PHYSICAL_TO_RESPONSE_11BIT


def ecu_response_id(ecu_address: int) -> int:
    """The 29-bit answer ID of the ECU at `ecu_address` (0x10 -> 0x18DAF110)."""
    return RESPONSE_29BIT_BASE | ecu_address & 0xFF


def response_mask(frame_ids: np.ndarray, extended: np.ndarray) -> np.ndarray:
    """`is_response` over columns of frame IDs and extended flags (the batch decoder's form)."""
    return np.where(extended, (frame_ids & _RESPONSE_29BIT_MASK) == RESPONSE_29BIT_BASE,
                    (frame_ids >= RESPONSE_11BIT.start) & (frame_ids < RESPONSE_11BIT.stop))


#: Kernel (or driver) filters passing every OBD-II answer: 0x7E8-0x7EF and 0x18DAF1xx.
RESPONSE_FILTERS = (
    {"can_id": RESPONSE_11BIT.start, "can_mask": 0x7F8, "extended": False},
    {"can_id": RESPONSE_29BIT_BASE, "can_mask": _RESPONSE_29BIT_MASK, "extended": True},
)


def label(frame_id: int, is_extended: bool) -> str:
    """How an ECU is named in reports: its answer ID in hex ("7E8", "18DAF110")."""
    return f"{frame_id:08X}" if is_extended else f"{frame_id:03X}"
