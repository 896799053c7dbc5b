"""Shared by the benchmarks: simulated logs made at benchmark time (never committed), timing and tables.

The logs come from the simulator (`firmware_bridge.sim.write_log`: WLTC 3b, broadcast frames of
dbc/kei_sim.dbc plus the OBD-II poller's requests and answers). A long log is that drive repeated with its
timestamps moved on by one drive and a 15-minute park each time, so each copy is its own trip.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import can

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the naive baseline: tests/oracle.py
from oracle import FrameDecoder, use_cantools  # noqa: E402,F401

from firmware_bridge.config import load_config
from firmware_bridge.pipeline import Pipeline, PipelineOptions
from firmware_bridge.sim import load_cycle, write_log
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.sinks.outputs import Outputs
from firmware_bridge.sources.frame_blocks import read_blocks
from firmware_bridge.sources.live import BusHealth
from firmware_bridge.sources.logs import LogProblems

WORK_DIR = Path(tempfile.gettempdir()) / "firmware-bridge-bench"
PARK_S = 900
#: The simulator's car: its broadcast frames decode only with it.
SIM_VEHICLE = "kei-sim"
SEND_SLICE_S = 0.001  # a sender wakes every millisecond and sends the frames due


def one_drive_log() -> Path:
    """One simulated WLTC drive as a candump log (made once, then reused from the temp directory)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    path = WORK_DIR / "wltc.log"
    if not path.exists():
        partial = path.with_suffix(".partial.log")
        write_log(partial, "wltc")
        partial.rename(path)
    return path


def hour_drive_log() -> Path:
    """An hour of driving: WLTC 3b twice, back to back, as one simulated drive (made once, then reused)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    path = WORK_DIR / "wltc-hour.log"
    if not path.exists():
        speeds = load_cycle("wltc").speeds_kmh
        partial = path.with_suffix(".partial.log")
        write_log(partial, Cycle("wltc-twice", tuple(speeds) + tuple(speeds[1:])))
        partial.rename(path)
    return path


def live_agent(state_dir: Path, flush_s: float | None = None) -> tuple[Pipeline, Outputs]:
    """The daemon's pipeline and outputs (bus health, points -> SpoolWriter -> SQLite spool -> InfluxDB sender)
    with default settings; the InfluxDB URL is a closed local port, so the sender backs off and points stay
    spooled."""
    config = load_config(None)
    config["influx"].update(url="http://127.0.0.1:9", api="v1", bucket="bench")
    config["spool"]["path"] = str(state_dir / "spool.db")
    if flush_s is not None:
        config["spool"]["flush_s"] = flush_s
    config["output"]["console"] = False
    pipeline = Pipeline(PipelineOptions(vehicle=SIM_VEHICLE))
    outputs = Outputs(pipeline, config, "kei")
    outputs.health.bus = BusHealth(None, "the benchmark's bus")  # as `run` has it
    pipeline.block_listeners.append(outputs.health.bus.on_block)
    return pipeline, outputs


def repeated_drives_log(min_frames: int) -> tuple[Path, int]:
    """(candump log of at least ``min_frames`` frames of repeated drives, its frame count)."""
    source = one_drive_log()
    lines = source.read_bytes().splitlines(keepends=True)
    copies = -(-min_frames // len(lines))
    path = WORK_DIR / f"wltc-x{copies}.log"
    if not path.exists():
        first_s, last_s = int(lines[0][1:11]), int(lines[-1][1:11])
        shift_s = last_s - first_s + 1 + PARK_S
        partial = path.with_suffix(".partial.log")
        with open(partial, "wb") as out:
            for copy in range(copies):
                offset = copy * shift_s
                out.writelines(b"(%d%s" % (int(line[1:11]) + offset, line[11:]) for line in lines)
        partial.rename(path)
    return path, copies * len(lines)


def seconds(fn, *args) -> tuple[float, object]:
    """Wall seconds of one call, and its result."""
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table (the README's Performance section is pasted from these)."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


class Sender(threading.Thread):
    """Plays a log's frames onto a bus at ``rate`` frames/s, as the car would put them on the wire.

    ``wall_stamps``: each frame is stamped with the wall clock as it is sent (a live bus); otherwise it keeps
    the log's (car) time, so a drive can be played faster than real time. ``seconds``: stop after that long,
    looping the log; None: play the log once. ``car_time_s`` is the newest frame's log time (a clock for ticks).
    """

    def __init__(self, bus: can.BusABC, log: Path, rate: float, seconds: float | None = None,
                 wall_stamps: bool = True) -> None:
        super().__init__(name="bench-sender", daemon=True)
        self.bus, self.log, self.rate, self.seconds, self.wall_stamps = bus, log, rate, seconds, wall_stamps
        self.sent = 0
        self.cpu_s = 0.0
        self.car_time_s = 0.0

    def _frames(self):
        while True:
            for block in read_blocks([self.log], LogProblems()):
                times, ids = block.t.tolist(), block.frame_id.tolist()
                ext, lengths = block.extended.tolist(), block.length.tolist()
                for row in range(len(block)):
                    yield times[row], ids[row], ext[row], bytes(block.data[row, :lengths[row]])
            if self.seconds is None:
                return

    def run(self) -> None:
        frames = self._frames()
        started = time.monotonic()
        try:
            while self.seconds is None or (time.monotonic() - started) < self.seconds:
                due = int((time.monotonic() - started) * self.rate)
                while self.sent < due:
                    t, frame_id, extended, data = next(frames)
                    self.car_time_s = t
                    self.bus.send(can.Message(timestamp=time.time() if self.wall_stamps else t,
                                              arbitration_id=frame_id, is_extended_id=extended, data=data))
                    self.sent += 1
                time.sleep(SEND_SLICE_S)
        except StopIteration:
            pass
        self.cpu_s = time.thread_time()


#: Recordings of real cars beside the repository (see the README's Performance section); absent elsewhere.
REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "real"
#: The 8th-generation Civic's broadcast recording: 33,740 frames, 20 s of driving.
REAL_CIVIC = "civic8th_vsslog.log"


def repeated_real_log(name: str, copies: int) -> Path | None:
    """A real candump recording repeated ``copies`` times, each copy 15 minutes after the last one ended (None:
    the recordings are not here)."""
    source = REAL_DIR / name
    if not source.exists():
        return None
    target = WORK_DIR / f"{source.stem}-x{copies}.log"
    if not target.exists():
        lines = source.read_text().splitlines()
        times = [float(line[1:line.index(")")]) for line in lines]
        span_s = max(times) - min(times) + 900.0
        partial = target.with_suffix(".partial")
        with open(partial, "w") as out:
            for copy in range(copies):
                for t, line in zip(times, lines):
                    out.write(f"({t + copy * span_s:.6f}){line[line.index(')') + 1:]}\n")
        partial.rename(target)
    return target
