"""Where each signal's bits sit in a frame and how its raw value becomes a physical one, compiled once per message.

The decoder reads a block's frames through this description with numpy (:meth:`SignalLayout.values`). The
arithmetic is cantools' own (``raw * scale + offset`` with the
conversion cantools would pick, ints staying ints), so values are identical to
``Message.decode(data, decode_choices=False)``; :class:`Unsupported` names what is left to cantools.
"""

from __future__ import annotations

from dataclasses import dataclass

import cantools
import numpy as np
from cantools.database.conversion import BaseConversion, IdentityConversion, LinearIntegerConversion

#: numpy types of IEEE floats by bit length (cantools/bitstruct read 16-, 32- and 64-bit floats).
_FLOAT_DTYPES = {16: np.float16, 32: np.float32, 64: np.float64}
_UINT_DTYPES = {16: np.uint16, 32: np.uint32, 64: np.uint64}
#: Integer arithmetic stays in int64 below this bound; beyond it, Python ints (exact, slower).
_INT64_SAFE = 2**62


class Unsupported(Exception):
    """A message the compiled decoders leave to cantools, and why (listed by the equivalence test)."""


def network_bit(start: int) -> int:
    """cantools' big-endian start bit (sawtooth numbering) as a bit index counted from the first byte's MSB."""
    return 8 * (start // 8) + (7 - start % 8)


@dataclass(frozen=True)
class SignalLayout:
    """One signal: bit position, raw type and the conversion cantools applies with choices off."""

    name: str
    big_endian: bool
    span_first_byte: int  # the bytes the signal touches, for the vectorised path
    span_bytes: int
    span_shift: int  # right shift within the span word (9-byte spans: within the first 8 bytes' word)
    length: int
    signed: bool
    float_bits: int  # 0 for integer signals
    kind: str  # "identity", "int" (integer scale and offset) or "float"
    scale: int | float
    offset: int | float
    int_scale: bool  # scale is a Python int: cantools multiplies exactly before adding a float offset

    @property
    def mask(self) -> int:
        return (1 << self.length) - 1

    def raw_values(self, bits: "FrameBits") -> np.ndarray:
        mask = np.uint64(self.mask)
        first, count = self.span_first_byte, self.span_bytes
        if count <= 8:
            raw = (bits.word(first, count, self.big_endian) >> np.uint64(self.span_shift)) & mask
        else:  # a 64-bit-ish signal straddling 9 bytes (CAN FD): the first 8 bytes' word plus the ninth byte
            head = bits.word(first, 8, self.big_endian)
            tail = bits.data[:, first + 8].astype(np.uint64)
            s = np.uint64(self.span_shift)
            if self.big_endian:
                raw = ((head << (np.uint64(8) - s)) | (tail >> s)) & mask
            else:
                raw = ((head >> s) | (tail << (np.uint64(64) - s))) & mask
        if self.float_bits:
            return raw.astype(_UINT_DTYPES[self.float_bits]).view(_FLOAT_DTYPES[self.float_bits]).astype(np.float64)
        if not self.signed:
            return raw
        spare = np.uint64(64 - self.length)  # sign-extend: the sign bit moved to bit 63 and shifted back
        return (raw << spare).view(np.int64) >> np.int64(64 - self.length)

    def values(self, bits: "FrameBits") -> np.ndarray | list:
        """Physical values of every frame: a numpy array, or Python numbers where int64 could overflow."""
        raw = self.raw_values(bits)
        if self.kind == "identity":
            return raw
        if self.kind == "int" or self.int_scale:  # cantools multiplies two ints exactly
            if not self._int64_safe():
                return [r * self.scale + self.offset for r in raw.tolist()]
            product = raw.astype(np.int64) * self.scale
            return product + self.offset if self.kind == "int" else product.astype(np.float64) + self.offset
        return raw.astype(np.float64) * self.scale + self.offset

    def _int64_safe(self) -> bool:
        if self.float_bits:
            return False
        return (1 << self.length) * abs(int(self.scale)) + abs(int(self.offset)) < _INT64_SAFE


class FrameBits:
    """Frames' data bytes (rows of a uint8 matrix) with the integer words signals are cut from, built once."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self._words: dict[tuple[int, int, bool], np.ndarray] = {}

    def word(self, first: int, count: int, big_endian: bool) -> np.ndarray:
        key = (first, count, big_endian)
        word = self._words.get(key)
        if word is None:
            padded = np.zeros((len(self.data), 8), dtype=np.uint8)
            if big_endian:
                padded[:, 8 - count:] = self.data[:, first:first + count]
                word = padded.view(">u8")[:, 0].astype(np.uint64)
            else:
                padded[:, :count] = self.data[:, first:first + count]
                word = padded.view("<u8")[:, 0].astype(np.uint64)
            self._words[key] = word
        return word


def _conversion(signal: cantools.database.can.Signal) -> BaseConversion:
    """The conversion cantools applies with ``decode_choices=False``: a value table's underlying scaling."""
    conv = signal.conversion
    return BaseConversion.factory(scale=conv.scale, offset=conv.offset, choices=None, is_float=conv.is_float)


def compile_signal(signal: cantools.database.can.Signal, message_length: int) -> SignalLayout:
    length = signal.length
    if length < 1 or length > 64:
        raise Unsupported(f"{signal.name}: {length}-bit signal")
    float_bits = 0
    if signal.conversion.is_float:
        if length not in _FLOAT_DTYPES:
            raise Unsupported(f"{signal.name}: {length}-bit float")
        float_bits = length
    big = signal.byte_order == "big_endian"
    first_bit = network_bit(signal.start) if big else signal.start
    last_bit = first_bit + length - 1
    if first_bit < 0 or last_bit >= 8 * message_length:
        raise Unsupported(f"{signal.name}: bits {first_bit}..{last_bit} outside the {message_length}-byte frame")
    if message_length <= 8:  # classic CAN: every signal is cut from the one 8-byte word of the frame
        span_first, span_count = 0, 8
    else:
        span_first, span_count = first_bit // 8, last_bit // 8 - first_bit // 8 + 1
    if span_count <= 8:
        span_end_bit = 8 * (span_first + span_count)
        span_shift = span_end_bit - (first_bit + length) if big else first_bit - 8 * span_first
    else:
        span_shift = 72 - (first_bit - 8 * span_first) - length if big else first_bit - 8 * span_first
    conv = _conversion(signal)
    kind = ("identity" if isinstance(conv, IdentityConversion)
            else "int" if isinstance(conv, LinearIntegerConversion) else "float")
    return SignalLayout(signal.name, big, span_first, span_count, span_shift, length,
                        signal.is_signed, float_bits, kind, conv.scale, conv.offset,
                        isinstance(conv.scale, int) and not isinstance(conv.scale, bool))
