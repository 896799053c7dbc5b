"""Differential test, end to end: random frames of every message of a database written as a candump log, read
and decoded by the agent's readers and decoders, equal cantools' ``decode(decode_choices=False)`` frame for frame.

Databases: the edge cases cantools' own test set exercises (tests/data/decoder_edge_cases.dbc: 29-bit IDs at or
below 0x7FF beside standard ones with the same number, SG_MUL_VAL_ ranges and cascades, 63/64-bit signed,
unsigned and float signals, CAN FD frames with 9-byte fields) and every database opendbc ships, generated ones
included, loaded by ``--dbc opendbc:NAME``. Frames cantools itself cannot decode are listed with the reason.
"""

from __future__ import annotations

import json
import random
import re
import struct
from collections import Counter
from pathlib import Path

import can
import cantools
import pytest

from conftest import T0, write_log
from firmware_bridge.cli import main
from firmware_bridge.decode.dbc import load_database, opendbc_names
from firmware_bridge.decode.decoder import Decoder
from firmware_bridge.records import block_of_messages
from firmware_bridge.sources.frame_blocks import read_blocks
from firmware_bridge.sources.logs import LogProblems, read_logs
from test_decode_equivalence import _payloads

pytestmark = pytest.mark.timeout(600)

EDGE_CASES = Path(__file__).parent / "data" / "decoder_edge_cases.dbc"


def _bits(value):
    return (type(value).__name__, struct.pack(">d", value) if isinstance(value, float) else value)


def _canonical(frame_id: int, name: str, signals: dict) -> tuple:
    return frame_id, name, [(k, *_bits(v)) for k, v in signals.items()]


def random_frames(db: cantools.database.Database, rng: random.Random) -> list[can.Message]:
    frames, t = [], T0
    for message in db.messages:
        for data in _payloads(message, rng):
            t += 0.001
            frames.append(can.Message(timestamp=t, arbitration_id=message.frame_id, data=data,
                                      is_extended_id=message.is_extended_frame, is_fd=message.length > 8))
    return frames


def cantools_reference(db: cantools.database.Database, frames: list[can.Message]):
    """(expected decoded frames, how many unknown, frames cantools cannot decode with the reason)."""
    by_id = {(m.frame_id, m.is_extended_frame): m for m in db.messages}
    expected, unknown, refused = [], 0, []
    for msg in frames:
        message = by_id[(msg.arbitration_id, msg.is_extended_id)]
        try:
            values = message.decode(bytes(msg.data), decode_choices=False)
        except cantools.database.DecodeError as exc:
            if "multiplexer" in str(exc):
                unknown += 1
            else:
                refused.append(f"{message.name}: {exc}")
            continue
        expected.append(_canonical(msg.arbitration_id, message.name, values))
    return expected, unknown, refused


def small_blocks(messages: list[can.Message], rng: random.Random):
    """python-can records packed into blocks of 1 to 40 frames, as a live bus's frames are."""
    at = 0
    while at < len(messages):
        size = rng.choice((1, 1, 2, 3, 40))
        yield block_of_messages(messages[at:at + size])
        at += size


def agent_decodes(db: cantools.database.Database, log: Path, rng: random.Random) -> tuple[list, list, dict]:
    """What the agent decodes from the log: read as blocks (replay, stats, decode), and read by python-can then
    packed into small blocks, single frames included (a live bus)."""
    decoder = Decoder(db, wanted=None)
    from_blocks = [_canonical(f.frame_id, f.message, f.signals) for block in read_blocks([log], LogProblems())
                   for f in decoder.decode(block, every_signal=True).frames()]
    live = Decoder(db, wanted=None)
    from_records = [_canonical(f.frame_id, f.message, f.signals)
                    for block in small_blocks(list(read_logs([log], LogProblems())), rng)
                    for f in live.decode(block, every_signal=True).frames()]
    assert live.counts == decoder.counts
    return from_blocks, from_records, decoder.counts.as_dict()


def check(db: cantools.database.Database, log: Path, rng: random.Random) -> tuple[int, list[str]]:
    frames = random_frames(db, rng)
    write_log(log, frames)
    expected, unknown, refused = cantools_reference(db, frames)
    from_blocks, from_records, counts = agent_decodes(db, log, rng)
    if not refused:
        assert from_blocks == expected
        assert from_records == expected
        assert counts == {"total": len(frames), "decoded": len(expected), "unknown": unknown, "malformed": 0}
    else:  # frames cantools refuses are malformed to the agent; every other frame must still be equal
        assert counts["malformed"] == len(refused)
        assert counts["decoded"] == len(expected) and from_blocks == expected and from_records == expected
    return len(frames), refused


def test_edge_cases_of_cantools_test_set_decode_identically(tmp_path):
    db = load_database([EDGE_CASES], bundled=False)
    total, refused = check(db, tmp_path / "edge.log", random.Random(3))
    assert not refused and total > 200
    # a standard and an extended frame with the same number are different messages
    names = {(m.frame_id, m.is_extended_frame): m.name for m in db.messages}
    assert names[(0x110, False)] == "SmallStandard" and names[(0x110, True)] == "SmallExtended"


def test_every_opendbc_database_decodes_identically(tmp_path):
    pytest.importorskip("opendbc")
    rng = random.Random(5)
    frames, refused_all = 0, []
    for name in opendbc_names():
        db = load_database([f"opendbc:{name}"], bundled=False)
        count, refused = check(db, tmp_path / f"{name}.log", rng)
        frames += count
        refused_all += [f"{name} {r}" for r in refused]
    by_message = Counter(refused_all)
    print(f"\n{frames} random frames of {len(opendbc_names())} opendbc databases decoded as cantools decodes them;"
          f" {len(refused_all)} frames of {len(by_message)} messages cantools cannot decode (the agent counts"
          f" them malformed):", *(f"{reason} ({n} frames)" for reason, n in sorted(by_message.items())), sep="\n  ")
    assert frames > 30_000


def test_all_58_top_level_opendbc_files_load_with_decode_and_a_frame_of_each_decodes(tmp_path, capsys):
    pytest.importorskip("opendbc")
    top_level = [name for name, path in opendbc_names().items() if path is not None]
    assert len(top_level) == 58
    rng = random.Random(9)
    for name in top_level:
        db = load_database([f"opendbc:{name}"], bundled=False)
        message = next(m for m in db.messages if m.signals and not any(s.is_multiplexer for s in m.signals))
        log = tmp_path / f"{name}.log"
        data = bytes(rng.getrandbits(8) for _ in range(message.length))
        write_log(log, [can.Message(timestamp=T0, arbitration_id=message.frame_id, data=data,
                                    is_extended_id=message.is_extended_frame, is_fd=message.length > 8)])
        assert main(["decode", str(log), "--dbc", f"opendbc:{name}"]) == 0
        out, err = capsys.readouterr()
        [line] = out.splitlines()
        decoded = json.loads(line)
        assert decoded["message"] == message.name, (name, err)
        assert decoded["signals"] == json.loads(json.dumps(message.decode(data, decode_choices=False))), name
        assert "1 frames: 1 decoded" in err, (name, err)


def test_generated_opendbc_file_is_opendbcs_generator_output(tmp_path):
    pytest.importorskip("opendbc")
    from opendbc.dbc.generator.generator import generate_all

    db = load_database(["opendbc:honda_civic_touring_2016_can_generated"], bundled=False)
    names = {m.name for m in db.messages}
    assert {"ENGINE_DATA", "POWERTRAIN_DATA"} <= names  # from the _honda_common / _nidec_common includes
    text = re.sub(r'CM_ SG_ \d+ "', 'CM_ "', generate_all()["honda_civic_touring_2016_can_generated"])
    reference = cantools.database.load_string(text, "dbc", strict=False)  # its two bare comments made plain
    assert names == {m.name for m in reference.messages}
