"""Shared helpers: OBD-II frames built by hand from SAE J1979, and small drives written as real log files."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import can
import pytest

T0 = 1775034000.0  # 2026-04-01T09:00:00Z


def obd_request(pid: int, t: float) -> can.Message:
    return can.Message(timestamp=t, arbitration_id=0x7DF, is_extended_id=False,
                       data=[0x02, 0x01, pid, 0x55, 0x55, 0x55, 0x55, 0x55])


def obd_response(pid: int, payload: list[int], t: float, ecu_id: int = 0x7E8) -> can.Message:
    data = [2 + len(payload), 0x41, pid, *payload]
    return can.Message(timestamp=t, arbitration_id=ecu_id, is_extended_id=False, data=data + [0x55] * (8 - len(data)))


def obd_drive(speeds_kmh, t0: float = T0, step_s: float = 1.0, rpm_idle: float = 800.0, map_kpa: int = 40):
    """Request/response pairs for speed, rpm, MAP and IAT at each step: what any OBD logger records."""
    frames = []
    for i, v in enumerate(speeds_kmh):
        t = t0 + i * step_s
        rpm = rpm_idle + 30 * v
        for k, (pid, payload) in enumerate(((0x0D, [round(v)]), (0x0C, list(round(rpm * 4).to_bytes(2, "big"))),
                                            (0x0B, [map_kpa]), (0x0F, [60]))):
            frames.append(obd_request(pid, t + k * 0.01))
            frames.append(obd_response(pid, payload, t + k * 0.01 + 0.002))
    return frames


def write_log(path, frames) -> None:
    with can.Logger(str(path)) as logger:
        for msg in frames:
            logger.on_message_received(msg)


#: The agent's state directory (spool, calibration ledger) for what the tests run: never the user's own.
TEST_STATE_HOME = tempfile.mkdtemp(prefix="firmware-bridge-test-state-")
atexit.register(shutil.rmtree, TEST_STATE_HOME, True)


#: The cache folder of what the tests run (opendbc's parsed databases, Grafana's npm packages): kept from one
#: run to the next, beside the user's own cache, never in it.
TEST_CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "firmware-bridge-tests"


@pytest.fixture(autouse=True)
def _test_state_home(monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", TEST_STATE_HOME)
    monkeypatch.setenv("XDG_CACHE_HOME", str(TEST_CACHE_HOME))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def run_cli(*args: str, input_text: str | None = None, env_token: str | None = None,
            state_home: str | os.PathLike | None = None, tz: str = "UTC") -> subprocess.CompletedProcess:
    """The command as a user runs it; INFLUX_* from the test's environment never leak in, and the state
    directory is the tests' own (``state_home``, or one shared by the session)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    env["TZ"] = tz  # times printed for people are local: the tests' are UTC unless a test says otherwise
    if state_home is not None:
        env["XDG_STATE_HOME"] = str(state_home)
    if env_token is not None:
        env["INFLUX_TOKEN"] = env_token
    return subprocess.run([sys.executable, "-m", "firmware_bridge", *map(str, args)], capture_output=True,
                          text=True, input=input_text, timeout=300, env=env)


@pytest.fixture
def trapezoid_drive():
    """0 → 60 km/h over 120 s, 60 s cruise, back to 0 over 120 s, 30 s idle: 3.0 km."""
    speeds = [min(i * 0.5, 60.0) for i in range(121)] + [60.0] * 60 + [60.0 - i * 0.5 for i in range(1, 121)]
    return speeds + [0.0] * 30


@pytest.fixture(scope="session")
def influx(tmp_path_factory):
    """One real InfluxDB server for the session; each test uses its own database."""
    from influx_server import InfluxServer

    server = InfluxServer(tmp_path_factory.mktemp("influxdb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx_db(influx, request):
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    influx.create_database(name)
    return name


#: Recordings of real cars made by other people, kept beside the repository (never inside it); tests that read
#: them skip where the folder is absent, so a clone elsewhere still passes.
REAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "real"


def real_log(name: str) -> Path:
    """A real recording by file name, or the test is skipped (with the reason) where it is not present."""
    path = REAL_DIR / name
    if not path.is_file():
        pytest.skip(f"real recording {name} not present ({REAL_DIR} is absent)")
    return path
