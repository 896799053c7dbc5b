"""Replay speed: the fast path against the naive one, side by side in the same run, on a >= 1M-frame log.

Naive: python-can's reader (candump lines checked by the same regular expression as before) and cantools
``Message.decode`` per frame (``FrameDecoder``, tests/oracle.py), feeding the pipeline python-can's messages. Fast: ``read_blocks`` (numpy candump parser; BLF through python-can) and ``replay_blocks`` (compiled
layouts, numpy per message). Both feed the same vehicle state and trip analytics; the stats JSON must come out
identical or the benchmark fails. Stages are timed separately so the table shows where the time goes.

Run: `make bench` or `.venv/bin/python benchmarks/bench_replay.py [--frames 1000000] [--repeat 3]`; each path runs
`--repeat` times, the two taking turns, and its fastest run counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from functools import partial
from pathlib import Path

import can

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # noqa: E402
    REAL_CIVIC, REAL_DIR, SIM_VEHICLE, WORK_DIR, FrameDecoder, repeated_drives_log, repeated_real_log, seconds, table,
    use_cantools)

from firmware_bridge.analytics.points import PointEmitter  # noqa: E402
from firmware_bridge.analytics.settings import AnalyticsSettings  # noqa: E402
from firmware_bridge.decode.decoder import Decoder  # noqa: E402
from firmware_bridge.replay import replay_blocks  # noqa: E402
from firmware_bridge.pipeline import Pipeline, PipelineOptions  # noqa: E402
from firmware_bridge.sources.frame_blocks import read_blocks  # noqa: E402
from firmware_bridge.sinks.line_protocol import to_line  # noqa: E402
from firmware_bridge.sources.logs import LogProblems, read_logs  # noqa: E402


def _options(vehicle: str) -> PipelineOptions:
    # the real recordings are 20 s drives: trips that short are kept
    settings = AnalyticsSettings(min_trip_s=10.0) if vehicle != SIM_VEHICLE else AnalyticsSettings()
    return PipelineOptions(vehicle=vehicle, settings=settings)


def naive_pipeline(vehicle: str = SIM_VEHICLE) -> Pipeline:
    pipeline = Pipeline(_options(vehicle))
    use_cantools(pipeline)
    return pipeline


def read_naive(path: Path) -> int:
    return sum(1 for _ in read_logs([path], LogProblems()))


def read_fast(path: Path) -> int:
    return sum(len(block) for block in read_blocks([path], LogProblems()))


def decode_naive(path: Path) -> int:
    decoder = FrameDecoder(Pipeline(PipelineOptions(vehicle=SIM_VEHICLE)).decoder.db)
    for msg in read_logs([path], LogProblems()):
        decoder.decode(msg)
    return decoder.counts.decoded


def decode_fast(path: Path) -> int:
    pipeline = Pipeline(PipelineOptions(vehicle=SIM_VEHICLE))
    decoder = Decoder(pipeline.decoder.db, pipeline.state.wanted_signals(), pipeline.obd_answers)
    for block in read_blocks([path], LogProblems()):
        for _ in decoder.decode(block).frames():
            pass
    return decoder.counts.decoded


def stats_naive(path: Path, points: bool = False, vehicle: str = SIM_VEHICLE) -> str:
    pipeline = naive_pipeline(vehicle)
    emitted = _points(pipeline) if points else None
    problems = LogProblems()
    pipeline.feed_messages(read_logs([path], problems))
    pipeline.finish()
    return _result(pipeline, problems, emitted)


def stats_fast(path: Path, points: bool = False, vehicle: str = SIM_VEHICLE) -> str:
    pipeline = Pipeline(_options(vehicle))
    emitted = _points(pipeline) if points else None
    problems = LogProblems()
    replay_blocks(pipeline, read_blocks([path], problems))
    pipeline.finish()
    return _result(pipeline, problems, emitted)


def _points(pipeline: Pipeline) -> list:
    """`replay`'s point stream (vehicle, trip, speed bands/domains, events) as line protocol, kept in memory."""
    lines: list[str] = []
    emitter = PointEmitter(pipeline, lambda point: lines.append(to_line(point)), "kei")
    pipeline.trip_listeners.append(lambda trip: emitter.flush())
    return lines


def _result(pipeline: Pipeline, problems: LogProblems, points: list | None) -> str:
    """The stats JSON, and with points their count and a digest of each series' points in emitted order."""
    stats = pipeline.stats(problems.count)
    if points is not None:
        series = sorted(points, key=lambda line: line.split(" ", 1)[0])  # stable: each series' own order kept
        stats["points"] = {"count": len(points), "sha256": hashlib.sha256("\n".join(series).encode()).hexdigest()}
    return json.dumps(stats)


def blf_copy(path: Path, frames: int) -> Path:
    blf = WORK_DIR / (path.stem + ".blf")
    if not blf.exists():
        partial = blf.with_suffix(".partial.blf")
        with can.Logger(str(partial)) as logger:
            for block in read_blocks([path], LogProblems()):
                for row in range(len(block)):
                    logger.on_message_received(block.message(row))
        partial.rename(blf)
    return blf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="at least this many frames (default 1M)")
    parser.add_argument("--no-blf", action="store_true", help="skip the BLF rows (writing the BLF takes a while)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each path, naive and fast taking turns; the fastest counts (default 3: a "
                             "shared VM's speed moves within minutes)")
    parser.add_argument("--real-copies", type=int, default=20,
                        help="copies of the real Civic recording (default 20: about 675k frames)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    log, frames = repeated_drives_log(args.frames)
    print(f"replay benchmark: {log} ({frames:,} frames, {log.stat().st_size / 2**20:.0f} MB; "
          f"simulated WLTC drives, broadcast + OBD-II)", flush=True)
    cases = [("read candump", read_naive, read_fast, log), ("read + decode candump", decode_naive, decode_fast, log),
             ("stats candump", stats_naive, stats_fast, log),
             ("replay candump (points made)", lambda p: stats_naive(p, True), lambda p: stats_fast(p, True), log)]
    if not args.no_blf:
        blf = blf_copy(log, frames)
        cases.append(("stats BLF", stats_naive, stats_fast, blf))
        cases.append(("replay BLF (points made)", lambda p: stats_naive(p, True), lambda p: stats_fast(p, True), blf))
    real = repeated_real_log(REAL_CIVIC, args.real_copies)
    if real is None:
        print(f"  (no real recordings at {REAL_DIR}: the real-car rows are left out)")
    else:
        civic = {"vehicle": "honda-civic"}
        cases.append((f"stats real Civic candump (x{args.real_copies})", partial(stats_naive, **civic),
                      partial(stats_fast, **civic), real))
        cases.append((f"replay real Civic (x{args.real_copies}, points made)",
                      partial(stats_naive, points=True, **civic), partial(stats_fast, points=True, **civic), real))
    rows, failed = [], False
    for name, naive, fast, path in cases:
        frames = read_fast(path)
        naive_s = fast_s = float("inf")
        outputs = set()
        for _ in range(args.repeat):  # taking turns, so a slow spell of the machine weighs on both alike
            run_s, naive_out = seconds(naive, path)
            naive_s = min(naive_s, run_s)
            run_s, fast_out = seconds(fast, path)
            fast_s = min(fast_s, run_s)
            outputs.update((naive_out, fast_out))
        same = len(outputs) == 1
        failed |= not same
        rows.append([name, f"{naive_s:.2f} s ({frames / naive_s / 1e3:,.0f} k/s)",
                     f"{fast_s:.2f} s ({frames / fast_s / 1e3:,.0f} k/s)", f"{naive_s / fast_s:.1f}x",
                     "identical" if same else "DIFFERENT"])
        print(f"  {name}: naive {naive_s:.2f} s, fast {fast_s:.2f} s", flush=True)
    print(table(["stage", "naive: python-can + cantools", "fast: numpy", "speed-up", "results"], rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
