"""Memory: RSS over a long replay and over an hour of simulated live driving; both must stay flat.

- Replay: `replay --out`'s path (every point written to a line-protocol file) over a multi-million-frame log
  (repeated simulated WLTC drives), RSS read after every block. Blocks are a few MB, and the analytics keep running sums, so RSS must not grow with the log.
- Live: the daemon's path (python-can virtual bus -> Notifier -> Pipeline -> points -> SQLite spool) reads an
  hour of simulated driving (WLTC 3b twice, broadcast + OBD-II traffic). To take a minute instead of an hour,
  a sender thread plays the recorded drive at 8,750 frames/s (a saturated 1 Mbit/s bus, about 65x real time)
  with the frames' own car-time stamps, and the agent's clock is the car's time: trips, intervals, points and
  silence checks all run on car time exactly as in a real hour. RSS is sampled every 0.25 s of wall time; it
  includes the sender thread (reading the log in 64 KB blocks).
Growth is last sample / first sample after a warm-up (the first 10 % of the run), in %. Each case runs twice:
without asammdf (the default install: python-can imports asammdf at `import can` when it is installed, for
MF4 logs) and with it (the `mf4` and `test` extras).

Run: `make bench` or `.venv/bin/python benchmarks/bench_memory.py [--frames 15000000]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if "--without-asammdf" in sys.argv:  # as installed without the mf4 extra: python-can finds no asammdf
    sys.modules["asammdf"] = None

import can  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import SIM_VEHICLE, Sender, hour_drive_log, live_agent, repeated_drives_log, table  # noqa: E402

from firmware_bridge.config import load_config  # noqa: E402
from firmware_bridge.health import rss_mb  # noqa: E402
from firmware_bridge.replay import replay_blocks  # noqa: E402
from firmware_bridge.pipeline import Pipeline, PipelineOptions  # noqa: E402
from firmware_bridge.sources import frame_blocks  # noqa: E402
from firmware_bridge.sinks.outputs import Outputs  # noqa: E402
from firmware_bridge.sources.frame_blocks import read_blocks  # noqa: E402
from firmware_bridge.sources.live import run_live  # noqa: E402
from firmware_bridge.sources.logs import LogProblems  # noqa: E402

LIVE_RATE = 8750.0
WARM_UP = 0.10


class CarClock:
    """The agent's clock during the accelerated drive: the car time of the newest frame sent."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.speedup = 1.0

    def now(self) -> float:
        return self.sender.car_time_s


def growth_row(name: str, samples: list[float], detail: str) -> list[str]:
    steady = samples[int(len(samples) * WARM_UP):]
    first, last, peak = steady[0], steady[-1], max(steady)
    return [name, detail, f"{samples[0]:.1f}", f"{first:.1f}", f"{last:.1f}", f"{peak:.1f}",
            f"{100.0 * (last - first) / first:+.1f} %"]


def replay_rss(frames: int) -> list[str]:
    """`replay --out points.lp`: the fast path with every point written to a line-protocol file."""
    log, count = repeated_drives_log(frames)
    samples: list[float] = []

    def blocks():
        for block in read_blocks([log], LogProblems()):
            yield block
            samples.append(rss_mb())

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(None)
        config["output"]["line_protocol"] = str(Path(tmp) / "points.lp")
        pipeline = Pipeline(PipelineOptions(vehicle=SIM_VEHICLE))
        outputs = Outputs(pipeline, config, "kei", replay=True)
        samples.append(rss_mb())
        started = time.perf_counter()
        replay_blocks(pipeline, blocks())
        pipeline.finish()
        outputs.close()
        wall_s = time.perf_counter() - started
    return growth_row("replay (points to a file)", samples, f"{count:,} frames, {len(pipeline.trips)} trips, "
                      f"{outputs.file.points_written:,} points, {wall_s:.0f} s")


def live_rss() -> list[str]:
    log = hour_drive_log()
    frame_blocks.BLOCK_BYTES = 2**16  # the sender's reads: small, so the car's buffers hardly weigh on the RSS
    channel = f"bench-memory-{time.monotonic_ns()}"
    agent_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    car_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        pipeline, outputs = live_agent(Path(tmp))
        samples.append(rss_mb())
        sender = Sender(car_bus, log, LIVE_RATE, seconds=None, wall_stamps=False)
        stop = threading.Event()

        def on_tick() -> None:
            samples.append(rss_mb())
            if not sender.is_alive() and pipeline.decoder.counts.total >= sender.sent:
                stop.set()

        started = time.monotonic()
        sender.start()
        run_live(agent_bus, pipeline, CarClock(sender), stop, on_tick=on_tick)
        wall_s = time.monotonic() - started
        outputs.close(drain_stall_s=0.1)
        spooled = outputs.spool_writer.points_committed
        agent_bus.shutdown()
        car_bus.shutdown()
    car_s = pipeline.last_t - pipeline.trips[0].start if pipeline.trips else 0.0
    return growth_row("live daemon path", samples, f"{sender.sent:,} frames, {car_s / 60:.0f} min of car time in "
                      f"{wall_s:.0f} s, {spooled:,} points spooled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=15_000_000, help="frames in the replayed log (default 15M)")
    parser.add_argument("--case", choices=("replay", "live"), help="run one case in this process (JSON row out)")
    parser.add_argument("--without-asammdf", action="store_true",
                        help="hide asammdf from python-can, as an install without the mf4 extra")
    args = parser.parse_args()
    if args.case:
        row = replay_rss(args.frames) if args.case == "replay" else live_rss()
        print(json.dumps([row[0], "without" if args.without_asammdf else "with", *row[1:]]))
        return 0
    rows = []
    for without in (True, False):
        for case in ("replay", "live"):  # each in a fresh process, so one's memory is not counted in the other
            out = subprocess.run([sys.executable, __file__, "--case", case, "--frames", str(args.frames),
                                  *(["--without-asammdf"] if without else [])],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.splitlines()[-1]))
            print("  " + ", ".join(rows[-1]), flush=True)
    print(table(["run", "mf4 extra (asammdf)", "what", "RSS MB at start", "after warm-up", "at end", "peak",
                 "growth"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
