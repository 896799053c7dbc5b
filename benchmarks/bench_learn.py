"""`learn` on ten minutes of a busy bus: time and peak memory.

The log is made here, in the temp directory: a seeded simulated car (its own six frame IDs, OBD-II polled at
10 requests/s) driving WLTC from 1000 s for ten minutes, plus 70 more frame IDs of the kind a real bus carries
(counters, noise, slow sensors, constants) at 10-1000 ms, about 2,600 frames/s in all: 1.6 M frames. Prints
the frames, the wall time and peak RSS of `firmware-bridge learn`, and whether speed and rpm came out right.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from firmware_bridge.sim import seeded_layout, write_log
from firmware_bridge.sim.cycles import Cycle, load_cycle


def busy_log(path: Path, minutes: float, seed: int, extra_ids: int = 70) -> None:
    car_log = path.with_suffix(".car.log")
    cycle = Cycle("wltc", load_cycle("wltc").speeds_kmh[1000:1000 + int(minutes * 60) + 1])
    write_log(car_log, cycle, broadcast=seeded_layout(seed).schedule())
    lines = car_log.read_text().splitlines()
    t0 = float(lines[0][1:lines[0].index(")")])
    rng = np.random.default_rng(seed)
    duration = minutes * 60
    rows = []
    for i in range(extra_ids):
        period = rng.choice([0.01, 0.01, 0.02, 0.02, 0.05, 0.1, 0.1, 0.2, 0.5, 1.0])
        t = t0 + rng.uniform(0, period) + np.arange(0, duration, period)
        data = rng.integers(0, 256, (len(t), 8), dtype=np.uint8)
        kind = i % 4
        if kind == 0:  # counter + constants
            data[:, 1:] = data[0, 1:]
            data[:, 0] = np.arange(len(t)) % 256
        elif kind == 1:  # a slow random walk in bytes 0-1, constant rest
            walk = np.cumsum(rng.integers(-3, 4, len(t))) % 65536
            data[:, 0], data[:, 1] = walk >> 8, walk & 0xFF
            data[:, 2:] = data[0, 2:]
        elif kind == 2:  # mostly constant
            data[:] = data[0]
        ids = np.full(len(t), 0x600 + i if i < 100 else 0x100 + i)
        rows.append((t, ids, data))
    t = np.concatenate([r[0] for r in rows])
    ids = np.concatenate([r[1] for r in rows])
    data = np.concatenate([r[2] for r in rows])
    hexes = np.char.upper(np.array([bytes(row).hex() for row in data]))
    extra = [f"({ti:.6f}) can0 {fid:03X}#{h}" for ti, fid, h in zip(t.tolist(), ids.tolist(), hexes.tolist())]
    stamped = [(float(line[1:line.index(")")]), line) for line in lines]
    stamped += [(ti, line) for ti, line in zip(t.tolist(), extra)]
    stamped.sort(key=lambda pair: pair[0])
    path.write_text("\n".join(line for _, line in stamped) + "\n")
    car_log.unlink()


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "busy.log"
        busy_log(log, args.minutes, args.seed)
        frames = sum(1 for _ in log.open())
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "firmware_bridge", "learn", str(log), "--name", "bench",
                                  "--out", tmp, "--format", "json"], stdout=subprocess.PIPE, text=True)
        peak_mb = 0.0
        while child.poll() is None:  # VmHWM: the learner's own peak (the parent's pages before exec do not count)
            peak_mb = max(peak_mb, _peak_rss_mb(child.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        if child.returncode:
            raise SystemExit(f"learn failed with exit {child.returncode}")
        found = json.loads(child.stdout.read())["quantities"]
        layout = seeded_layout(args.seed)
        right = {q: found.get(q, {}).get("id") == layout.database.get_message_by_name(layout.targets[q][0]).frame_id
                 for q in ("speed_kmh", "engine_rpm")}
        print(f"learn: {frames:,} frames ({log.stat().st_size / 1e6:.0f} MB candump), {wall:.1f} s wall "
              f"({frames / wall / 1000:.0f} k frames/s), peak RSS {peak_mb:.0f} MB; found {', '.join(found)}; "
              f"speed and rpm right: {right}")


if __name__ == "__main__":
    main()
