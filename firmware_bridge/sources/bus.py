"""Live buses through python-can: any interface python-can knows (socketcan, slcan, virtual, plug-ins)."""

from __future__ import annotations

import can
import cantools

from firmware_bridge.errors import InputError

STANDARD_MASK = 0x7FF
EXTENDED_MASK = 0x1FFFFFFF


def bus_filters(db: cantools.database.Database) -> list[dict]:
    """Kernel (or driver) filters for the frame IDs we decode, OBD-II responses from every ECU included."""
    filters = [{"can_id": m.frame_id, "can_mask": EXTENDED_MASK if m.is_extended_frame else STANDARD_MASK,
                "extended": m.is_extended_frame} for m in db.messages]
    filters.append({"can_id": 0x7E8, "can_mask": 0x7F8, "extended": False})  # 0x7E8-0x7EF
    filters.append({"can_id": 0x18DAF100, "can_mask": 0x1FFFFF00, "extended": True})  # 29-bit responses
    return filters


def open_bus(interface: str, channel: str | int, bitrate: int | None = None,
             filters: list[dict] | None = None, **kwargs) -> can.BusABC:
    """A python-can bus; a bad interface or an absent device is a one-line error."""
    options = dict(kwargs)
    if bitrate:
        options["bitrate"] = bitrate
    try:
        return can.Bus(interface=interface, channel=channel, can_filters=filters, **options)
    except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as exc:
        raise InputError(f"cannot open CAN bus interface={interface} channel={channel}: {exc}") from None
