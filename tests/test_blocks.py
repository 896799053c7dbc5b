"""One analytics over blocks: any cut of a log into blocks gives the same figures and points, and the numpy
reader and compiled decoders give what python-can's readers and cantools give.

- ``cuts``: the same log in blocks of 1, 17 and 4096 frames and whole through `replay`'s path: identical stats
  JSON (same floats, same counts) and identical points, series by series in emitted order.
- ``reference``: python-can's readers and cantools ``Message.decode`` per frame (the naive path), fed to the
  same analytics, against ``read_blocks`` and the compiled decoders: identical stats, problems and points.
"""

from __future__ import annotations

import gzip
import json
import random

import can
import numpy as np
import pytest

from conftest import T0, obd_drive, obd_response, run_cli, write_log
from oracle import FrameDecoder, use_cantools
from firmware_bridge.analytics.points import PointEmitter
from firmware_bridge.analytics.settings import AnalyticsSettings
from firmware_bridge.pipeline import Pipeline, PipelineOptions
from firmware_bridge.records import Point, block_of_messages, join_blocks
from firmware_bridge.replay import replay_blocks
from firmware_bridge.sinks.line_protocol import to_line
from firmware_bridge.sim import load_cycle
from firmware_bridge.sim import write_log as simulate_log
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.sources import frame_blocks
from firmware_bridge.sources.frame_blocks import read_blocks
from firmware_bridge.sources.logs import LogProblems, read_logs


def _pipeline(vehicle="kei-sim", settings=None, corrections=None) -> Pipeline:
    pipeline = Pipeline(PipelineOptions(vehicle=vehicle, settings=settings or AnalyticsSettings()))
    pipeline.tracker.fuel_corrections.update(corrections or {})
    return pipeline


def _points(pipeline, **emitter_options):
    """`replay`'s point stream (vehicle, trip, speed bands and domains, events) as line protocol, the way each
    series receives it: points of one series (measurement + tags) in the order they were emitted."""
    points: list[Point] = []
    emitter = PointEmitter(pipeline, points.append, "kei", **emitter_options)

    def series() -> list[str]:
        emitter.flush()
        in_series = sorted(points, key=lambda p: (p.measurement, sorted(p.tags.items())))  # stable sort
        return [to_line(point) for point in in_series]

    return series


def _run(pipeline, blocks, problems, emitter) -> tuple[str, list[str]]:
    points = _points(pipeline, **(emitter or {}))
    replay_blocks(pipeline, blocks)
    pipeline.finish()
    return json.dumps(pipeline.stats(problems.count), indent=1), points()


# -- any cut into blocks -----------------------------------------------------------------------------------
def _cut(blocks, frames: int | None, head: int | None):
    """The log's frames (the first ``head`` of them) in blocks of ``frames`` (None: one block)."""
    whole = join_blocks(list(blocks))
    whole = whole.select(np.arange(min(head or len(whole), len(whole))))
    frames = frames or len(whole)
    for lo in range(0, len(whole), frames):
        yield whole.select(np.arange(lo, min(lo + frames, len(whole))))


def assert_any_cut(paths, cuts=(1, 17, 4096), head: int | None = None, emitter=None, **options) -> dict:
    """The same figures and points whichever way the log (its first ``head`` frames) is cut into blocks."""
    def run(frames):
        problems = LogProblems()
        return _run(_pipeline(**options), _cut(read_blocks(paths, problems), frames, head), problems, emitter)

    expected = run(None)
    for frames in cuts:
        got = run(frames)
        assert got[0] == expected[0], f"blocks of {frames}: other figures"
        assert got[1] == expected[1], f"blocks of {frames}: other points"
    return json.loads(expected[0])


# -- against python-can and cantools -----------------------------------------------------------------------
def reference(paths, emitter=None, **options) -> tuple[str, list[str], list[str]]:
    """(stats JSON, problems reported, points) through python-can's readers and cantools."""
    pipeline = _pipeline(**options)
    use_cantools(pipeline)
    problems = LogProblems(max_examples=50)
    messages = list(read_logs(paths, problems))
    blocks = (block_of_messages(messages[lo:lo + 4096]) for lo in range(0, len(messages), 4096))
    stats, points = _run(pipeline, blocks, problems, emitter)
    return stats, problems.examples, points


def fast(paths, emitter=None, **options) -> tuple[str, list[str], list[str]]:
    """(stats JSON, problems reported, points) the way `replay` reads and decodes."""
    problems = LogProblems(max_examples=50)
    stats, points = _run(_pipeline(**options), read_blocks(paths, problems), problems, emitter)
    return stats, problems.examples, points


def assert_same(paths, emitter=None, **options) -> dict:
    """Identical stats, problems and points both ways."""
    expected, got = reference(paths, emitter, **options), fast(paths, emitter, **options)
    assert sorted(got[1]) == sorted(expected[1])  # a block's bad lines come before its frames out of range
    assert got[0] == expected[0]
    assert got[2] == expected[2]
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
    assert assert_any_cut([broadcast_log], cuts=(4096,)) == stats
    assert_any_cut([broadcast_log], cuts=(17,), head=30_000)
    assert assert_any_cut([broadcast_log], cuts=(1,), head=6000)["trips"] == []  # 45 s: too short a trip


@pytest.mark.parametrize("emitter", [{"interval_s": 0.25, "trip_update_s": 7.0, "hold_s": 0.5},
                                     {"interval_s": 10.0, "trip_update_s": 600.0}])
def test_other_point_intervals(broadcast_log, emitter):
    """Vehicle points four times a second with short holds (intervals without a fresh value skipped) and trip
    rewrites every 7 s, or a point every 10 s: the same points either way, and in any cut."""
    assert_same([broadcast_log], emitter=emitter)
    assert_any_cut([broadcast_log], cuts=(1, 17), head=4000, emitter=emitter)


@pytest.mark.parametrize("pid_set", ["maf", "fuel_rate"])
def test_obd_only_drives(tmp_path, part_cycle, pid_set):
    path = tmp_path / f"{pid_set}.log"
    simulate_log(path, part_cycle, pid_set=pid_set, broadcast=False)
    stats = assert_same([path])
    assert stats["trips"][0]["fuel_source"] == pid_set
    assert assert_any_cut([path]) == stats


def test_ev_drive(tmp_path, part_cycle):
    ev = pytest.importorskip("firmware_bridge.sim.ev")
    path = tmp_path / "ev.log"
    simulate_log(path, part_cycle, ev.EvConfig())
    stats = assert_same([path], vehicle="mitsubishi-i-miev")
    assert stats["frames"]["decoded"] > 0 and stats["trips"][0]["energy_regen_kwh"] > 0
    assert assert_any_cut([path], cuts=(4096,), vehicle="mitsubishi-i-miev") == stats
    assert_any_cut([path], cuts=(17,), head=20_000, vehicle="mitsubishi-i-miev")


def _edited(source, target, edit) -> None:
    """A copy of a candump log with each line passed through edit(seconds into the drive, ID, line) -> line."""
    lines = source.read_text().splitlines(keepends=True)
    start = float(lines[0][1:lines[0].index(")")])
    with open(target, "w") as out:
        for line in lines:
            t = float(line[1:line.index(")")]) - start
            edited = edit(t, line.split()[2].split("#")[0], line)
            if edited:
                out.write(edited)


def test_idle_stop_priority_switch_gaps_and_a_trip_split(tmp_path, broadcast_log):
    """The edges where the tracker splits blocks: rpm 0 at standstills (idle-stop), the broadcast
    speed silent for a minute (the OBD-II answers take over after 2 s), 10 s with no frames (gaps), 310 s of
    silence (two trips); with harsh-event thresholds low enough to count some, and fill-up corrections."""
    def edit(t, frame_id, line):
        if 350 <= t < 660 or 300 <= t < 310 or (frame_id == "1A0" and 200 <= t < 260):
            return None
        if frame_id == "180" and (t < 12 or 99 <= t < 138 or 567 <= t < 601):
            return line[:line.index("#") + 1] + "0000" + line[line.index("#") + 5:]
        return line

    _edited(broadcast_log, tmp_path / "edges.log", edit)
    stats = assert_same([tmp_path / "edges.log"],
                        settings=AnalyticsSettings(harsh_accel_ms2=0.9, harsh_brake_ms2=0.9),
                        corrections={"fuel_rate": 1.04, "speed_density": 0.97})
    assert len(stats["trips"]) == 2 and stats["total"]["gaps"] >= 1
    assert stats["total"]["harsh_accel_events"] > 0 and stats["total"]["harsh_brake_events"] > 0
    assert assert_any_cut([tmp_path / "edges.log"], cuts=(57, 4096),
                          settings=AnalyticsSettings(harsh_accel_ms2=0.9, harsh_brake_ms2=0.9),
                          corrections={"fuel_rate": 1.04, "speed_density": 0.97}) == stats


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_randomly_edited_logs(tmp_path, broadcast_log, seed):
    """Random silences, idle-stops and lost broadcast speed: wherever the edges fall, the same stats."""
    rng = random.Random(seed)
    windows = [(kind, start, start + rng.uniform(0.5, 40.0)) for kind, start in
               ((rng.choice(("silence", "idle_stop", "no_speed", "no_engine")), rng.uniform(0, 700))
                for _ in range(12))]

    def edit(t, frame_id, line):
        for kind, start, end in windows:
            if start <= t < end:
                if kind == "silence" or (kind, frame_id) in (("no_speed", "1A0"), ("no_engine", "180")):
                    return None
                if kind == "idle_stop" and frame_id == "180":
                    line = line[:line.index("#") + 1] + "0000" + line[line.index("#") + 5:]
        return line

    _edited(broadcast_log, tmp_path / "random.log", edit)
    assert assert_same([tmp_path / "random.log"]) == assert_any_cut([tmp_path / "random.log"], cuts=(1000 + seed,))


def test_two_logs_small_blocks_gz_and_blf(tmp_path, broadcast_log, monkeypatch):
    """Block boundaries anywhere (a 64 KB block), gzip, and BLF through python-can's reader: same figures."""
    monkeypatch.setattr(frame_blocks, "BLOCK_BYTES", 65536)
    gz = tmp_path / "drive.log.gz"
    gz.write_bytes(gzip.compress(broadcast_log.read_bytes()))
    blf = tmp_path / "drive.blf"
    write_log(blf, list(can.LogReader(str(broadcast_log)))[:30_000])
    assert_same([broadcast_log, gz])
    assert_same([blf])


def test_blf_frames_as_python_can_reads_them(tmp_path, trapezoid_drive):
    """Regular containers (numpy) and odd ones (python-can's parser) alike: every field, every frame."""
    frames = obd_drive(trapezoid_drive)
    frames[100:100] = [
        can.Message(timestamp=T0 + 100.5, arbitration_id=0x18DAF110, is_extended_id=True, data=[3, 0x41, 0x0D, 9]),
        can.Message(timestamp=T0 + 100.6, arbitration_id=0x123, is_remote_frame=True, dlc=4),
        can.Message(timestamp=T0 + 100.7, is_error_frame=True),
        can.Message(timestamp=T0 + 100.8, arbitration_id=0x7E8, is_fd=True, data=bytes(range(12))),
    ]
    blf = tmp_path / "odd.blf"
    write_log(blf, frames)
    cut = tmp_path / "cut.blf"
    cut.write_bytes(blf.read_bytes()[:-700])
    for path in (blf, cut):
        expected = list(read_logs([path], LogProblems()))
        got = [(float(b.t[r]), int(b.frame_id[r]), bool(b.extended[r]), bool(b.remote[r]), bool(b.error[r]),
                bytes(b.data[r, :b.length[r]])) for b in read_blocks([path], LogProblems()) for r in range(len(b))]
        assert got == [(m.timestamp, m.arbitration_id, m.is_extended_id, m.is_remote_frame, m.is_error_frame,
                        bytes(m.data)) for m in expected]
        assert_same([path])


def test_truncated_gzip_keeps_what_came_before(tmp_path, broadcast_log):
    whole = gzip.compress(broadcast_log.read_bytes())
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(whole[:len(whole) // 3])
    assert assert_same([cut])["frames"]["decoded"] > 10_000


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
    assert stats["frames"]["malformed"] >= 4  # 3 bad lines and a time past 2262, left out of the trips
    assert [trip["start"][:4] for trip in stats["trips"]] == ["2026"]


def test_multi_pid_and_iso_tp_answers(tmp_path, trapezoid_drive):
    """Answers ObdAnswers splits or reassembles go through it at their place in the stream, in any cut."""
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
    assert assert_same([tmp_path / "multi.log"]) == assert_any_cut([tmp_path / "multi.log"])


def test_decode_command_matches_cantools(tmp_path, broadcast_log):
    head = tmp_path / "head.log"
    head.write_text("".join(broadcast_log.read_text().splitlines(keepends=True)[:20_000])
                    + "(1775034999.000000) vcan0 7E8#0341011111555555\n")  # a PID the DBC does not describe
    result = run_cli("decode", head, "--vehicle", "kei-sim")
    assert result.returncode == 0, result.stderr
    decoder = FrameDecoder(Pipeline(PipelineOptions(vehicle="kei-sim")).decoder.db)
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


def test_a_log_of_frames_shorter_than_8_bytes(tmp_path):
    """Every frame of a block short (candump writes what the bus carried): counted, never a crash."""
    frames = [can.Message(timestamp=T0 + i, arbitration_id=0x7E8, is_extended_id=False, data=[0x03, 0x41])
              for i in range(5)]
    write_log(tmp_path / "short.log", frames)
    stats = assert_same([tmp_path / "short.log"])
    assert stats["frames"] == {"total": 5, "decoded": 0, "unknown": 0, "malformed": 5}


def test_python_can_messages_as_a_block():
    """A live bus's messages packed into a block: every kind of frame, each row what python-can gave."""
    messages = [can.Message(timestamp=T0 + 0.001 * i, arbitration_id=0x100 + i, is_extended_id=i % 2 == 0,
                            data=bytes(range(1, 1 + size)), is_fd=size > 8)
                for i, size in enumerate((0, 3, 8, 12, 64, 8))]
    messages += [can.Message(timestamp=T0 + 1.0, arbitration_id=0x7DF, is_extended_id=False, is_remote_frame=True,
                             dlc=8),
                 can.Message(timestamp=T0 + 1.5, arbitration_id=0x40, is_error_frame=True, data=bytes([0, 0x20]))]
    block = block_of_messages(messages)
    assert block.data.shape == (len(messages), 64) and block.data.flags.writeable
    for row, msg in enumerate(messages):
        assert block.t[row] == msg.timestamp and block.frame_id[row] == msg.arbitration_id
        assert (block.extended[row], block.remote[row], block.error[row]) == (
            msg.is_extended_id, msg.is_remote_frame, msg.is_error_frame)
        assert block.length[row] == len(msg.data)
        assert bytes(block.data[row]) == bytes(msg.data).ljust(64, b"\0")
    short = block_of_messages(messages[:3])  # classic frames: at least 8 bytes wide, zero-padded
    assert short.data.shape == (3, 8) and bytes(short.data[1]) == bytes([1, 2, 3, 0, 0, 0, 0, 0])
    assert len(block_of_messages([])) == 0 and block_of_messages([]).data.shape == (0, 8)
    # Bits on the wire: the error frame is the controller's report, not a frame on the bus.
    assert block.wire_bits() == sum((67 if m.is_extended_id else 47) + 8 * len(m.data) for m in messages[:-1])
