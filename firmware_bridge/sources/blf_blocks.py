"""Vector BLF logs as blocks of frames, read with numpy where the file is regular and by python-can elsewhere.

A BLF file is a run of zlib-compressed containers; inside, almost every object of a CAN log is a 48-byte
CAN_MESSAGE (object header v1 + the message). A container made only of those is read as one numpy record array;
any other container (CAN FD, error frames, other object types, odd alignment) is parsed by python-can's own
``BLFReader._parse_data``, so what python-can would return, this returns: the same frames, timestamps (its
Decimal arithmetic equals one IEEE division here, checked by the replay tests), the same handling of objects cut
across containers, and the same errors on a damaged file. That reuse of python-can's internals is limited to the
releases it was checked against (:data:`CHECKED_PYTHON_CAN`, the range pyproject.toml allows; the tests compare
this reader with ``BLFReader`` on real drives); with any other, BLF is read by ``BLFReader`` alone.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import can
import numpy as np
from can.io import blf

from firmware_bridge.records import FrameBlock, block_of_messages, join_blocks
from firmware_bridge.sources.frame_blocks import _EXACT_INT, BLOCK_FRAMES, message_blocks
from firmware_bridge.sources.logs import LogProblems, open_log, report_unreadable

#: python-can releases whose BLF internals this reader was checked against (frames and times equal to
#: ``can.BLFReader``'s, tests/test_log_formats.py): the dependency range in pyproject.toml.
CHECKED_PYTHON_CAN = ("4.4.", "4.5.", "4.6.")

#: Object header (base + v1) and CAN_MESSAGE, as laid out in the file (little-endian, packed).
_CAN_OBJECT = np.dtype([("signature", "S4"), ("header_size", "<u2"), ("header_version", "<u2"),
                        ("object_size", "<u4"), ("object_type", "<u4"), ("time_flags", "<u4"),
                        ("client", "<u2"), ("object_version", "<u2"), ("timestamp", "<u8"),
                        ("channel", "<u2"), ("flags", "u1"), ("dlc", "u1"), ("can_id", "<u4"), ("data", "u1", 8)])


def _regular_objects(data: bytes, start_timestamp: float) -> tuple[FrameBlock, bytes] | None:
    """(frames, the bytes python-can would carry over to the next container) when ``data`` is only 48-byte
    CAN_MESSAGE objects (plus the start of one cut by the container's end); else None."""
    size = _CAN_OBJECT.itemsize
    whole, rest = divmod(len(data), size)
    if not whole:
        return None
    objects = np.frombuffer(data, dtype=_CAN_OBJECT, count=whole)
    regular = ((objects["signature"] == b"LOBJ") & (objects["header_size"] == 32) & (objects["header_version"] == 1)
               & (objects["object_size"] == size) & np.isin(objects["object_type"], (blf.CAN_MESSAGE, blf.CAN_MESSAGE2))
               & (objects["timestamp"] < _EXACT_INT))
    if not regular.all():
        return None
    tail = data[whole * size:]
    if rest >= 8 and not tail.startswith(b"LOBJ"):
        return None  # python-can raises here: let it
    if rest >= 16 and struct.unpack_from("<L", tail, 8)[0] <= rest:
        return None  # a smaller object follows: python-can's loop reads it
    ticks = objects["timestamp"].astype(np.float64)
    # float(Decimal(ticks) * Decimal("1e-5")) is the correctly rounded ticks / 10^5: one IEEE division of exact
    # operands gives the same double.
    t = np.where(objects["time_flags"] == blf.TIME_TEN_MICS, ticks / 1e5, ticks / 1e9) + start_timestamp
    can_id = objects["can_id"]
    remote = (objects["flags"] & blf.REMOTE_FLAG) != 0
    length = np.where(remote, 0, np.minimum(objects["dlc"], 8)).astype(np.int16)
    payload = np.where(np.arange(8) < length[:, None], objects["data"], 0).astype(np.uint8)
    block = FrameBlock(t, (can_id & 0x1FFFFFFF).astype(np.uint32), (can_id & blf.CAN_MSG_EXT) != 0, remote,
                       np.zeros(whole, dtype=bool), length, payload)
    return block, tail


def _python_can_objects(data: bytes, start_timestamp: float) -> tuple[list[can.Message], bytes]:
    """python-can's own container parsing (BLFReader._parse_container without the reader)."""
    reader = blf.BLFReader.__new__(blf.BLFReader)
    reader.start_timestamp, reader._pos = start_timestamp, 0
    messages: list[can.Message] = []
    try:
        messages.extend(reader._parse_data(data))
    except struct.error:
        pass
    return messages, data[reader._pos:]


def _containers(f) -> Iterator[tuple[bytes, float]]:
    """(uncompressed container data, the file's start time), as BLFReader.__iter__ walks the file."""
    header = blf.FILE_HEADER_STRUCT.unpack(f.read(blf.FILE_HEADER_STRUCT.size))
    if header[0] != b"LOGG":
        raise blf.BLFParseError("Unexpected file format")
    start_timestamp = blf.systemtime_to_timestamp(header[14:22])
    f.read(header[1] - blf.FILE_HEADER_STRUCT.size)
    base = blf.OBJ_HEADER_BASE_STRUCT
    while data := f.read(base.size):
        signature, _, _, obj_size, obj_type = base.unpack(data)
        if signature != b"LOBJ":
            raise blf.BLFParseError()
        obj_data = f.read(obj_size - base.size)
        f.read(obj_size % 4)
        if obj_type != blf.LOG_CONTAINER:
            continue
        method, _ = blf.LOG_CONTAINER_STRUCT.unpack_from(obj_data)
        container = obj_data[blf.LOG_CONTAINER_STRUCT.size:]
        if method == blf.NO_COMPRESSION:
            yield container, start_timestamp
        elif method == blf.ZLIB_DEFLATE:
            yield zlib.decompressobj().decompress(container), start_timestamp
        else:
            blf.LOG.warning("Unknown compression method (%d)", method)


def blf_messages(path: Path, problems: LogProblems) -> Iterator[can.Message]:
    """python-can's own reader (the reference, and the path for unchecked python-can releases)."""
    with open_log(path) as f:
        yield from can.BLFReader(f)


def blf_blocks(path: Path, problems: LogProblems) -> Iterator[FrameBlock]:
    """Every frame of a .blf (or .blf.gz) file in blocks; a damaged file is reported after its readable frames."""
    if not can.__version__.startswith(CHECKED_PYTHON_CAN):
        yield from message_blocks(path, problems)
        return
    count, pending = 0, []
    try:
        with open_log(path) as f:
            tail = b""
            for data, start_timestamp in _containers(f):
                data = tail + data if tail else data
                regular = _regular_objects(data, start_timestamp)
                if regular is not None:
                    block, tail = regular
                    pending.append(block)
                else:
                    messages, tail = _python_can_objects(data, start_timestamp)
                    if messages:
                        pending.append(block_of_messages(messages))
                if sum(len(b) for b in pending) >= BLOCK_FRAMES:
                    block, pending = join_blocks(pending), []
                    count += len(block)
                    yield block
    except Exception as exc:  # noqa: BLE001 - reported as read_logs reports it, after the frames before it
        if pending:
            yield join_blocks(pending)
        report_unreadable(problems, path, count + sum(len(b) for b in pending), exc)
        return
    if pending:
        yield join_blocks(pending)


