"""The fast replay path (numpy candump reader + compiled decoders) against python-can + cantools, frame for frame.

Every test replays the same logs both ways: python-can's readers, cantools ``Message.decode`` per frame
(``FrameDecoder``) and ``Pipeline.feed`` — the path the agent used before — and ``read_blocks`` + ``replay_blocks``.
The stats JSON must be identical (same floats, same counts), and so must the problems reported for bad lines.
"""

from __future__ import annotations

import gzip
import json

import can
import pytest

from conftest import T0, obd_drive, obd_response, run_cli, write_log
from firmware_bridge.decode.batch import replay_blocks
from firmware_bridge.decode.decoder import FrameDecoder
from firmware_bridge.pipeline import Pipeline, PipelineOptions
from firmware_bridge.sim import load_cycle
from firmware_bridge.sim import write_log as simulate_log
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.sources import frame_blocks
from firmware_bridge.sources.frame_blocks import read_blocks
from firmware_bridge.sources.logs import LogProblems, read_logs


def reference(paths, vehicle=None) -> tuple[str, list[str]]:
    pipeline = Pipeline(PipelineOptions(vehicle=vehicle))
    pipeline.decoder = FrameDecoder(pipeline.decoder.db)
    problems = LogProblems(max_examples=50)
    pipeline.feed_all(read_logs(paths, problems))
    pipeline.finish()
    return json.dumps(pipeline.stats(problems.count), indent=1), problems.examples


def fast(paths, vehicle=None) -> tuple[str, list[str]]:
    pipeline = Pipeline(PipelineOptions(vehicle=vehicle))
    problems = LogProblems(max_examples=50)
    replay_blocks(pipeline, read_blocks(paths, problems))
    pipeline.finish()
    return json.dumps(pipeline.stats(problems.count), indent=1), problems.examples


def assert_same(paths, vehicle=None) -> dict:
    expected, fast_result = reference(paths, vehicle), fast(paths, vehicle)
    assert fast_result[1] == expected[1]
    assert fast_result[0] == expected[0]
    return json.loads(expected[0])


@pytest.fixture(scope="module")
def part_cycle() -> Cycle:
    """The first 700 s of WLTC 3b (low phase and into medium), then 40 s standing."""
    speeds = load_cycle("wltc").speeds_kmh
    return Cycle("wltc-700s", tuple(speeds[:700]) + (0.0,) * 40)


@pytest.fixture(scope="module")
def broadcast_log(tmp_path_factory, part_cycle):
    path = tmp_path_factory.mktemp("fast") / "drive.log"
    simulate_log(path, part_cycle)  # broadcast frames + the OBD-II poller's requests and answers
    return path


def test_simulated_drive_with_broadcast_and_obd(broadcast_log):
    stats = assert_same([broadcast_log])
    assert stats["frames"]["decoded"] > 80_000 and stats["trips"]


@pytest.mark.parametrize("pid_set", ["maf", "fuel_rate"])
def test_obd_only_drives(tmp_path, part_cycle, pid_set):
    path = tmp_path / f"{pid_set}.log"
    simulate_log(path, part_cycle, pid_set=pid_set, broadcast=False)
    assert assert_same([path])["trips"][0]["fuel_source"] == pid_set


def test_ev_drive(tmp_path, part_cycle):
    ev = pytest.importorskip("firmware_bridge.sim.ev")
    path = tmp_path / "ev.log"
    simulate_log(path, part_cycle, ev.EvConfig())
    assert assert_same([path], vehicle="mitsubishi-i-miev")["frames"]["decoded"] > 0


def test_two_logs_small_blocks_gz_and_blf(tmp_path, broadcast_log, monkeypatch):
    """Block boundaries anywhere (a 64 KB block), gzip, and BLF through python-can's reader: same figures."""
    monkeypatch.setattr(frame_blocks, "BLOCK_BYTES", 65536)
    gz = tmp_path / "drive.log.gz"
    gz.write_bytes(gzip.compress(broadcast_log.read_bytes()))
    blf = tmp_path / "drive.blf"
    write_log(blf, list(can.LogReader(str(broadcast_log)))[:30_000])
    assert_same([broadcast_log, gz])
    assert_same([blf])


def test_corrupt_and_unusual_lines(tmp_path, trapezoid_drive):
    """Lines of other shapes take python-can's path; corrupt ones are reported by file and line, the same way."""
    log = tmp_path / "odd.log"
    write_log(log, obd_drive(trapezoid_drive))
    lines = log.read_text().splitlines()
    lines[10:10] = ["(1775034010.5) vcan0 7E8#03410D28",  # no microseconds, short frame
                    "(1775034010.600000)\tvcan0\t7E8#03410D2855555555",  # tabs
                    "  (1775034010.700000) vcan0 7E8#03410D2955555555 T  ",  # padded, transmitted
                    "(1775034010.800000) can1 123#R",  # remote frame
                    "(1775034010.900000) can1 20000080#0000000000000000",  # error frame
                    "(1775034011.000000) can1 18DAF110#03410D2A55555555",  # 29-bit OBD-II answer
                    "(1775034011.100000) can1 7E8##1030410D2B5555555555",  # CAN FD
                    "(17750340111234567890.100000) vcan0 7E8#03410D2855555555",  # more digits than a double
                    "",
                    "(1775034011.200000) vcan0 7E8#ZZ",
                    "garbage line",
                    "(1775034011.300000) vcan0 7E8#03410D2", ]
    log.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    stats = assert_same([log])
    assert stats["frames"]["malformed"] >= 3


def test_multi_pid_and_iso_tp_answers(tmp_path, trapezoid_drive):
    """Answers ObdAnswers splits or reassembles go through it at their place in the stream."""
    frames = obd_drive(trapezoid_drive[:60])
    t = frames[-1].timestamp + 0.5
    frames.append(can.Message(timestamp=t, arbitration_id=0x7E8, is_extended_id=False,
                              data=[0x06, 0x41, 0x0D, 0x28, 0x0C, 0x1F, 0x40, 0x55]))  # two PIDs, one frame
    frames.append(can.Message(timestamp=t + 0.1, arbitration_id=0x7E8, is_extended_id=False,
                              data=[0x10, 0x09, 0x41, 0x0D, 0x29, 0x0C, 0x1F, 0x40]))  # first frame
    frames.append(can.Message(timestamp=t + 0.2, arbitration_id=0x7E8, is_extended_id=False,
                              data=[0x21, 0x0B, 0x28, 0x55, 0x55, 0x55, 0x55, 0x55]))  # consecutive frame
    frames += obd_drive(trapezoid_drive[60:], t0=t + 1.0)
    write_log(tmp_path / "multi.log", frames)
    assert_same([tmp_path / "multi.log"])


def test_decode_command_matches_cantools(tmp_path, broadcast_log):
    head = tmp_path / "head.log"
    head.write_text("".join(broadcast_log.read_text().splitlines(keepends=True)[:20_000])
                    + "(1775034999.000000) vcan0 7E8#0341011111555555\n")  # a PID the DBC does not describe
    result = run_cli("decode", head)
    assert result.returncode == 0, result.stderr
    decoder = FrameDecoder(Pipeline().decoder.db)
    expected = []
    for msg in read_logs([head], LogProblems()):
        frame = decoder.decode(msg)
        if frame is not None:
            expected.append(json.dumps({"t": frame.t, "id": frame.frame_id, "message": frame.message,
                                        "signals": frame.signals}))
    assert result.stdout.splitlines() == expected
    assert "1 unknown" in result.stderr


def test_short_frames_and_unknown_ids_count_the_same(tmp_path):
    frames = [obd_response(0x0D, [40], T0 + i) for i in range(5)]
    frames[2].data = frames[2].data[:3]
    frames += [can.Message(timestamp=T0 + 9, arbitration_id=0x123, data=[1, 2])]
    write_log(tmp_path / "short.log", frames)
    stats = assert_same([tmp_path / "short.log"])
    assert stats["frames"] == {"total": 6, "decoded": 4, "unknown": 1, "malformed": 1}
