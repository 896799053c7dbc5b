"""A cantools message compiled into a tree of signal layouts: multiplexers select child nodes, as cantools does.

The tree mirrors cantools' own codec (``Message.decode``): a node's signals are decoded, then each multiplexer
in the node picks the child node for its value, recursively (the OBD-II DBC nests service, then PID); a value
with no child is an unknown frame (cantools raises "expected multiplexer id ..."). A decoder that needs only
some signals compiles with ``wanted`` and still walks every multiplexer, so frames are counted the same way.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import cantools
import numpy as np

from firmware_bridge.decode.layout import FrameBits, SignalLayout, Unsupported, compile_signal, network_bit
from firmware_bridge.groups import group_rows

#: (row indices into the decoded frames, signal names, one column of values per name)
Fragment = tuple[np.ndarray, tuple[str, ...], list]


@dataclass(frozen=True)
class NodeLayout:
    signals: tuple[SignalLayout, ...]  # the ones to output, in cantools' order
    muxes: tuple[tuple[SignalLayout, dict[int, "NodeLayout"]], ...]  # multiplexer -> child node by value


@dataclass(frozen=True)
class MessageLayout:
    name: str
    length: int
    root: NodeLayout

    def decode_many(self, data: np.ndarray) -> tuple[np.ndarray, list[Fragment]]:
        """Many frames (rows of a uint8 matrix, at least ``length`` columns): a known-frame mask and fragments."""
        known = np.ones(len(data), dtype=bool)
        fragments: list[Fragment] = []
        _walk_many(self.root, FrameBits(data), np.arange(len(data)), known, fragments)
        if not known.all():
            fragments = [_keep_rows(fragment, known) for fragment in fragments]
        return known, fragments


def _walk_many(node: NodeLayout, bits: FrameBits, rows: np.ndarray, known: np.ndarray,
               fragments: list[Fragment]) -> None:
    if node.signals:
        fragments.append((rows, tuple(s.name for s in node.signals), [s.values(bits) for s in node.signals]))
    for mux, children in node.muxes:
        for mux_id, part in group_rows(np.asarray(mux.values(bits), dtype=np.int64)):  # each child's in file order
            child = children.get(mux_id)
            if child is None:
                known[rows[part]] = False
            else:
                _walk_many(child, FrameBits(bits.data[part]), rows[part], known, fragments)


def _keep_rows(fragment: Fragment, known: np.ndarray) -> Fragment:
    rows, names, columns = fragment
    keep = known[rows]
    return rows[keep], names, [np.asarray(c, dtype=object if isinstance(c, list) else None)[keep] for c in columns]


def _children_ids(message: cantools.database.can.Message, mux: cantools.database.can.Signal) -> set[int]:
    """Values a multiplexer selects a child for: its children's ids and its value table's keys (as cantools)."""
    ids: set[int] = set()
    for signal in message.signals:
        if signal.multiplexer_signal == mux.name and signal.multiplexer_ids is not None:
            ids.update(signal.multiplexer_ids)
    if mux.conversion.choices:
        ids.update(mux.conversion.choices.keys())
    return ids


def _compile_node(message: cantools.database.can.Message, parent: str | None, mux_id: int | None,
                  wanted: Collection[str] | None) -> NodeLayout:
    members = [s for s in message.signals if s.multiplexer_signal == parent and (
        mux_id is None or (s.multiplexer_ids is not None and mux_id in s.multiplexer_ids))]
    _check_packing(members, message.length)
    signals, muxes = [], []
    for signal in members:
        layout = compile_signal(signal, message.length)
        if signal.is_multiplexer:
            if layout.kind == "float" or layout.float_bits or layout.length > 62:
                raise Unsupported(f"{signal.name}: multiplexer with a non-integer or 64-bit value")
            children = {child: _compile_node(message, signal.name, child, wanted)
                        for child in sorted(_children_ids(message, signal))}
            if children:
                muxes.append((layout, children))
        if wanted is None or signal.name in wanted:
            signals.append(layout)
    return NodeLayout(tuple(signals), tuple(muxes))


def _check_packing(members: list, message_length: int) -> None:
    """cantools packs a node's signals into one bit pattern per byte order (big-endian ones by start bit,
    little-endian ones in list order); overlapping or out-of-order signals shift its fields, so such a node
    decodes only as cantools decodes it."""
    end_bit = 0
    for signal in sorted((s for s in members if s.byte_order == "big_endian"), key=lambda s: network_bit(s.start)):
        if network_bit(signal.start) < end_bit:
            raise Unsupported(f"{signal.name}: overlaps another big-endian signal")
        end_bit = network_bit(signal.start) + signal.length
    end_bit = 8 * message_length
    for signal in reversed([s for s in members if s.byte_order == "little_endian"]):
        if signal.start + signal.length > end_bit:
            raise Unsupported(f"{signal.name}: overlaps another little-endian signal")
        end_bit = signal.start


def compile_message(message: cantools.database.can.Message, wanted: Collection[str] | None = None) -> MessageLayout:
    """The message's layout tree (only ``wanted`` signals output, all if None); raises :class:`Unsupported`."""
    if message.is_container:
        raise Unsupported("container message")
    names = [s.name for s in message.signals]
    if len(set(names)) != len(names):
        raise Unsupported("two signals share a name")
    return MessageLayout(message.name, message.length, _compile_node(message, None, None, wanted))
