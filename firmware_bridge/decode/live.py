"""The live path's decoder: a table from frame ID to a compiled layout of only the signals in use.

cantools decodes every signal of a message, looks up value tables and builds its codec dicts per frame; the
agent on a Pi needs a handful of signals out of each frame. Each frame ID is resolved once (OBD-II aliases
included) to a layout compiled for the signal map's signals, so a frame costs two ``int.from_bytes`` and a shift
and mask per wanted signal. Frames are counted exactly as :class:`FrameDecoder` counts them, and messages the
compiled layouts cannot reproduce bit for bit (see :mod:`firmware_bridge.decode.layout`) go through cantools.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import can
import cantools

from firmware_bridge.decode.compiled import MessageLayout, compile_message
from firmware_bridge.decode.decoder import FrameDecoder
from firmware_bridge.decode.layout import Unsupported
from firmware_bridge.records import DecodedFrame

#: A message the compiled layouts leave to cantools.
CANTOOLS = None


class Layouts:
    """Compiled layouts per message name, built on first use: one for the wanted signals, one for all."""

    def __init__(self, wanted: Mapping[str, Collection[str]] | None) -> None:
        self.wanted = wanted
        self._cache: dict[tuple[str, bool], MessageLayout | None] = {}

    def get(self, message: cantools.database.Message, every_signal: bool = False) -> MessageLayout | None:
        key = (message.name, every_signal)
        try:
            return self._cache[key]
        except KeyError:
            pass
        wanted = None if every_signal or self.wanted is None else self.wanted.get(message.name, ())
        try:
            layout = compile_message(message, wanted)
        except Unsupported:  # cantools decodes it (the tests list which messages and why)
            layout = CANTOOLS
        self._cache[key] = layout
        return layout


class LiveDecoder:
    """Decodes one ``can.Message`` at a time into the wanted signals; ``counts`` as :class:`FrameDecoder`."""

    def __init__(self, db: cantools.database.Database, wanted: Mapping[str, Collection[str]] | None) -> None:
        self.db = db
        self.reference = FrameDecoder(db)  # ID resolution, counting and the cantools fallback
        self.counts = self.reference.counts
        self.layouts = Layouts(wanted)
        self._table: dict[tuple[int, bool, bool], tuple[cantools.database.Message, MessageLayout | None] | None] = {}

    def entry(self, frame_id: int, is_extended: bool, every_signal: bool):
        key = (frame_id, is_extended, every_signal)
        try:
            return self._table[key]
        except KeyError:
            pass
        message = self.reference.message_for(frame_id, is_extended)
        entry = None if message is None else (message, self.layouts.get(message, every_signal))
        self._table[key] = entry
        return entry

    def decode(self, msg: can.Message, every_signal: bool = False) -> DecodedFrame | None:
        """The frame's wanted signals (every signal if asked), or None: counted, or nothing wanted in it."""
        if msg.is_error_frame or msg.is_remote_frame:
            return self.reference.decode(msg)
        entry = self.entry(msg.arbitration_id, msg.is_extended_id, every_signal)
        if entry is None or entry[1] is CANTOOLS:
            return self.reference.decode(msg)
        message, layout = entry
        counts = self.counts
        counts.total += 1
        data = msg.data
        if len(data) < layout.length:
            counts.malformed += 1
            return None
        signals = layout.decode(bytes(data))
        if signals is None:
            counts.unknown += 1
            return None
        counts.decoded += 1
        if not signals and not every_signal:
            return None
        return DecodedFrame(msg.timestamp, msg.arbitration_id, message.name, signals)

    def unknown_ids(self) -> list[tuple[int, bool]]:
        """(frame ID, extended) of every ID seen that no loaded database describes, lowest first."""
        return sorted({(key[0], key[1]) for key, entry in self._table.items() if entry is None})

    def decode_all(self, msg: can.Message) -> DecodedFrame | None:
        """Every signal of the frame (raw-signal points, the ``decode`` command)."""
        return self.decode(msg, every_signal=True)
