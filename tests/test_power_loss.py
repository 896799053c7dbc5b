"""The agent killed with SIGKILL at random moments while it writes to InfluxDB, restarted each time: the spool
is never corrupt, and once a run completes every point is in the database exactly once (same series and time).

A longer soak of the same test: benchmarks/soak_power_loss.py (FB_POWER_LOSS_KILLS, default 20 here)."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from firmware_bridge.sim import write_log

from conftest import run_cli


def replay_cmd(log, influx, db, config):
    return [sys.executable, "-m", "firmware_bridge", "replay", str(log), "--influx-url", influx.url,
            "--influx-api", "v1", "--influx-bucket", db, "--config", str(config)]


def test_sigkill_while_writing_loses_nothing(influx, influx_db, tmp_path):
    log = tmp_path / "drive.log"
    write_log(log, "wltc-jp", broadcast=False)
    spool = tmp_path / "spool.db"
    config = tmp_path / "agent.toml"
    config.write_text(f'[spool]\npath = "{spool}"\nflush_s = 0.05\nbatch_points = 200\ndrain_s = 2.0\n')
    rng = random.Random(4242)
    kills = 0
    while kills < int(os.environ.get("FB_POWER_LOSS_KILLS", "20")):
        proc = subprocess.Popen(replay_cmd(log, influx, influx_db, config), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        with sqlite3.connect(spool) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    result = run_cli(*replay_cmd(log, influx, influx_db, config)[3:], "--out", tmp_path / "expected.lp")
    assert result.returncode == 0 and "still spooled" not in result.stderr, result.stderr
    expected = {}  # measurement -> distinct (series, time): trip points are rewritten, the last write wins
    for line in (tmp_path / "expected.lp").read_text().splitlines():
        series, _, rest = line.partition(" ")
        expected.setdefault(series.split(",", 1)[0], set()).add((series, rest.rsplit(" ", 1)[1]))
    for measurement in ("vehicle", "speed_band", "speed_domain", "trip"):
        rows = influx.rows(f'SELECT * FROM "{measurement}"', influx_db)
        assert len(rows) == len(expected[measurement]), measurement
