"""Live buses through python-can: any interface python-can knows (socketcan, slcan, virtual, plug-ins).

``run`` opens its bus without kernel or driver filters: the bus health figures (frames/s, bus load, error
frames, bus-off) need every frame the interface delivers, and a frame no database describes costs one table
look-up. :func:`bus_filters` is what a filter must let through to lose nothing the decoders use.
"""

from __future__ import annotations

import can
import cantools

from firmware_bridge.errors import InputError
from firmware_bridge.obd import ids

STANDARD_MASK = 0x7FF
EXTENDED_MASK = 0x1FFFFFFF


def bus_filters(db: cantools.database.Database) -> list[dict]:
    """Kernel (or driver) filters for the frame IDs we decode, OBD-II responses from every ECU included."""
    filters = [{"can_id": m.frame_id, "can_mask": EXTENDED_MASK if m.is_extended_frame else STANDARD_MASK,
                "extended": m.is_extended_frame} for m in db.messages]
    return filters + [dict(f) for f in ids.RESPONSE_FILTERS]


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
