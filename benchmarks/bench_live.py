"""The live path at full bus load: CPU share, frame-to-spool latency and dropped frames at 4,400 and 8,750 frames/s.

A sender thread plays the simulator's traffic (WLTC drive: dbc/kei_sim.dbc broadcast frames, OBD-II requests
and answers) onto a python-can virtual bus at a fixed rate, each frame stamped with the wall clock as it is
sent; the agent reads it as `firmware-bridge run` does (python-can Notifier -> Pipeline -> points -> SpoolWriter
-> SQLite spool, a sender thread for InfluxDB). The InfluxDB URL is a closed local port: the sender backs off
and points stay spooled, as in a car without network, so no server's CPU is in the numbers.

- CPU share: the process's CPU time minus the sender thread's own (time.thread_time), over wall time, in % of
  one core (the virtual bus lives in one process, so the "car" runs beside the agent).
- Latency: for each point, the spool commit's completion time minus the timestamp of the newest frame the
  pipeline had read when it emitted the point. The SpoolWriter commits every ``[spool] flush_s``.
- Dropped: frames sent minus frames the pipeline counted (after a short drain).
- The last row runs the same sender and Notifier with no pipeline (frames taken every tick and dropped): the
  share of the agent's CPU that is python-can's receive (the virtual bus's queue, the Notifier's thread).

Run: `make bench` or `.venv/bin/python benchmarks/bench_live.py [--seconds 20]`. `--json` measures the default
at 8,750 frames/s only and prints `{"frames_per_s_per_core": ..., "cpu_pct_at_8750": ..., "dropped": ...}`
(frames per second one core would take: the rate sent divided by the agent's share of a core).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import can
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import Sender, live_agent, one_drive_log, table, use_cantools  # noqa: E402

from firmware_bridge.clock import RealClock  # noqa: E402
from firmware_bridge.config import load_config  # noqa: E402
from firmware_bridge.pipeline import Pipeline  # noqa: E402
from firmware_bridge.sinks.outputs import Outputs  # noqa: E402
from firmware_bridge.sources.live import TICK_WALL_S, PipelineFeeder, run_live  # noqa: E402

class CommitLatency:
    """Frame timestamp at each point's emission, matched to the spool commit that made it durable."""

    def __init__(self, pipeline: Pipeline, outputs: Outputs) -> None:
        self.pipeline = pipeline
        self.waiting: collections.deque[float] = collections.deque()
        self.latencies_s: list[float] = []
        self.commits = 0
        self.recording = True
        self._lock = threading.Lock()
        writer, spool = outputs.spool_writer, outputs.spool
        put, append = writer.put, spool.append

        def timed_put(point):
            with self._lock:
                if point.fields:
                    self.waiting.append(self.pipeline.last_t)
                put(point)

        def timed_append(lines, points, *args, **kwargs):
            result = append(lines, points, *args, **kwargs)
            done = time.time()
            self.commits += 1
            for _ in range(points):
                frame_t = self.waiting.popleft()
                if self.recording and frame_t is not None:
                    self.latencies_s.append(done - frame_t)
            return result

        outputs.sinks[outputs.sinks.index(put)] = timed_put  # Outputs hands points to the writer's put
        spool.append = timed_append


def run_rate(log: Path, rate: float, seconds: float, flush_s: float, cantools: bool) -> dict:
    channel = f"bench-live-{rate}-{flush_s}-{cantools}-{time.monotonic_ns()}"
    agent_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    car_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline, outputs = live_agent(Path(tmp), flush_s)
        if cantools:
            use_cantools(pipeline)
        latency = CommitLatency(pipeline, outputs)
        sender = Sender(car_bus, log, rate, seconds)
        stop = threading.Event()

        def drained() -> None:
            if not sender.is_alive() and (pipeline.decoder.counts.total >= sender.sent
                                          or time.monotonic() - finished_at[0] > 2.0):
                stop.set()

        finished_at = [float("inf")]
        wall0, cpu0 = time.monotonic(), time.process_time()
        sender.start()

        def on_tick() -> None:
            if not sender.is_alive() and finished_at[0] == float("inf"):
                finished_at[0] = time.monotonic()
            drained()

        run_live(agent_bus, pipeline, RealClock(), stop, on_tick=on_tick)
        wall_s, cpu_s = time.monotonic() - wall0, time.process_time() - cpu0
        latency.recording = False
        outputs.close(drain_stall_s=0.1)
        agent_bus.shutdown()
        car_bus.shutdown()
    return {"rate": rate, "cantools": cantools, "flush_s": flush_s, "sent_per_s": sender.sent / seconds,
            "agent_cpu": (cpu_s - sender.cpu_s) / wall_s, "process_cpu": cpu_s / wall_s,
            "dropped": sender.sent - pipeline.decoder.counts.total,
            "latency_ms": np.array(latency.latencies_s) * 1000.0, "commits": latency.commits}


def receive_only(log: Path, rate: float, seconds: float) -> dict:
    """python-can's share alone: the same sender and Notifier, the frames taken every tick and dropped (no
    pipeline), so the table shows how much of the agent's CPU is python-can's receive."""
    channel = f"bench-receive-{rate}-{time.monotonic_ns()}"
    agent_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    car_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    feeder, sender, taken = PipelineFeeder(), Sender(car_bus, log, rate, seconds), 0
    wall0, cpu0 = time.monotonic(), time.process_time()
    notifier = can.Notifier(agent_bus, [feeder], timeout=0.05)
    sender.start()
    while sender.is_alive():
        time.sleep(TICK_WALL_S)
        taken += len(feeder.take())
    notifier.stop()
    taken += len(feeder.take())
    wall_s, cpu_s = time.monotonic() - wall0, time.process_time() - cpu0
    agent_bus.shutdown()
    car_bus.shutdown()
    return {"rate": rate, "sent_per_s": sender.sent / seconds, "agent_cpu": (cpu_s - sender.cpu_s) / wall_s,
            "process_cpu": cpu_s / wall_s, "dropped": sender.sent - taken}


def row(run: dict) -> list[str]:
    lat_ms = run["latency_ms"]
    return [f"{run['rate']:,.0f}", "cantools" if run["cantools"] else "compiled", f"{run['flush_s']:g} s",
            f"{run['sent_per_s']:,.0f}", f"{100.0 * run['agent_cpu']:.1f} %", f"{100.0 * run['process_cpu']:.1f} %",
            f"{run['dropped']:,}",
            f"{np.percentile(lat_ms, 50):.1f} / {np.percentile(lat_ms, 99):.1f} / {lat_ms.max():.1f}",
            f"{len(lat_ms):,} in {run['commits']}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per run (default 20)")
    parser.add_argument("--json", action="store_true", help="only the default at 8,750 frames/s, as JSON")
    args = parser.parse_args()
    log = one_drive_log()
    default_flush_s = load_config(None)["spool"]["flush_s"]
    if args.json:
        run = run_rate(log, 8750, args.seconds, default_flush_s, False)
        print(json.dumps({"frames_per_s_per_core": round(run["sent_per_s"] / run["agent_cpu"]),
                          "cpu_pct_at_8750": round(100.0 * run["agent_cpu"], 1), "dropped": run["dropped"]}))
        return 0
    runs = [(4400, default_flush_s, False), (8750, default_flush_s, False), (8750, 1.0, False),
            (8750, default_flush_s, True)]  # the default, a commit a second, cantools' decoder
    rows = []
    for rate, flush_s, cantools in runs:
        rows.append(row(run_rate(log, rate, args.seconds, flush_s, cantools)))
        print("  " + ", ".join(rows[-1]), flush=True)
    alone = receive_only(log, 8750, args.seconds)
    rows.append([f"{alone['rate']:,.0f}", "none: python-can's receive alone", "-", f"{alone['sent_per_s']:,.0f}",
                 f"{100.0 * alone['agent_cpu']:.1f} %", f"{100.0 * alone['process_cpu']:.1f} %",
                 f"{alone['dropped']:,}", "-", "-"])
    print("  " + ", ".join(rows[-1]), flush=True)
    print(table(["frames/s", "decoder", "spool flush_s", "sent/s", "agent CPU (1 core)", "process CPU",
                 "dropped", "latency ms p50 / p99 / max", "points in commits"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
