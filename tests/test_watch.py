"""The agent says what it sees: each WARNING a newcomer's first drive can need, provoked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import can
import pytest

from conftest import T0, obd_drive, obd_response, run_cli, write_log


def warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("WARNING")]


def test_a_log_whose_frames_nothing_decodes(tmp_path):
    frames = [can.Message(timestamp=T0 + i / 10, arbitration_id=0x123 + i % 3, data=bytes(8), is_extended_id=False)
              for i in range(30)]
    write_log(tmp_path / "unknown.log", frames)
    result = run_cli("stats", tmp_path / "unknown.log")
    assert result.returncode == 0
    [line] = warnings(result)
    assert "none of which the loaded databases decode" in line and "0x123, 0x124, 0x125" in line
    assert "firmware-bridge inspect" in line


def test_a_log_that_decodes_but_gives_no_speed(tmp_path):
    write_log(tmp_path / "coolant.log", [obd_response(0x05, [120], T0 + i) for i in range(5)])
    for command in ("stats", "replay"):
        lines = warnings(run_cli(command, tmp_path / "coolant.log"))
        [dropped] = [line for line in lines if "shorter than min_trip_s" in line]  # 4 s of coolant readings
        [line] = [line for line in lines if line != dropped]
        assert "no signal gives speed_kmh or engine_rpm" in line and "--signal-map" in line, command


def test_an_empty_log(tmp_path):
    (tmp_path / "empty.log").write_text("")
    [line] = warnings(run_cli("stats", tmp_path / "empty.log"))
    assert "empty.log: no CAN frames in it" in line


def test_a_good_log_says_nothing(tmp_path, trapezoid_drive):
    write_log(tmp_path / "drive.log", obd_drive(trapezoid_drive))
    assert warnings(run_cli("stats", tmp_path / "drive.log")) == []


@pytest.mark.smoke
def test_run_on_a_silent_bus_says_so(tmp_path):
    """Real time (a few seconds): nothing on the bus, and the agent says what to check."""
    config = tmp_path / "agent.toml"
    config.write_text("[bus]\nsilence_warn_s = 1\n[output]\nconsole = false\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    agent = subprocess.Popen([sys.executable, "-m", "firmware_bridge", "run", "-i", "virtual", "-c",
                              f"silent-{os.getpid()}", "--config", str(config)], stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        deadline, seen = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "no frames from" not in seen:
            seen += agent.stderr.readline()
    finally:
        agent.send_signal(signal.SIGTERM)
        rest = agent.communicate(timeout=30)[1]
    line = next(l for l in (seen + rest).splitlines() if "no frames from" in l)
    assert line.startswith("WARNING") and "bitrate" in line and "try --obd" in line
