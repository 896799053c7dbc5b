"""Times for people are local with their offset; JSON and InfluxDB stay UTC. Progress bars on a terminal."""

from __future__ import annotations

import json
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from conftest import T0, obd_drive, run_cli, write_log


def test_stats_table_in_local_time_json_in_utc(tmp_path, trapezoid_drive):
    write_log(tmp_path / "drive.log", obd_drive(trapezoid_drive, t0=T0))  # 2026-04-01T09:00:00Z
    table = run_cli("stats", tmp_path / "drive.log", tz="Asia/Tokyo").stdout
    assert "start (local time)" in table and "2026-04-01 18:00:00 +0900" in table
    [trip] = json.loads(run_cli("stats", tmp_path / "drive.log", "--format", "json", tz="Asia/Tokyo").stdout)["trips"]
    assert trip["start"].startswith("2026-04-01T09:00:00.") and trip["start"].endswith("Z")


def test_a_fillup_time_without_a_zone_is_local(tmp_path):
    state = tmp_path / "state"
    result = run_cli("fillup", "--litres", "20", "--odometer", "1000", "--time", "2026-04-01T18:30",
                     state_home=state, tz="Asia/Tokyo")
    assert result.returncode == 0, result.stderr
    assert "2026-04-01 18:30 +0900" in result.stdout
    again = run_cli("fillup", "--litres", "18", "--odometer", "1300", "--time", "2026-04-01T03:30",
                    state_home=state, tz="America/Los_Angeles")
    assert "2026-04-01 03:30 -0700" in again.stdout
    ledger = json.loads(run_cli("calibration", "--format", "json", state_home=state, tz="America/Los_Angeles").stdout)
    assert [f["time"] for f in ledger["fillups"]] == ["2026-04-01T09:30:00Z", "2026-04-01T10:30:00Z"]


def test_progress_bar_only_on_a_terminal(tmp_path, trapezoid_drive):
    write_log(tmp_path / "drive.log", obd_drive(trapezoid_drive * 20))
    piped = run_cli("stats", tmp_path / "drive.log")
    assert "%" not in piped.stderr
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 wide
    process = subprocess.run([sys.executable, "-m", "firmware_bridge", "stats", str(tmp_path / "drive.log")],
                             stdout=subprocess.PIPE, stderr=secondary, timeout=120,
                             env={**os.environ, "TZ": "UTC"})
    os.close(secondary)
    shown = b""
    try:
        while chunk := os.read(main, 65536):
            shown += chunk
    except OSError:
        pass  # the terminal closed with the process
    os.close(main)
    assert process.returncode == 0
    assert b"100%" in shown and b"frames" in shown
