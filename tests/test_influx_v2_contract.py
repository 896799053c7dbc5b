"""The v2 API path as a protocol contract against a local endpoint: URL, org, bucket, precision, gzip, token,
and what the spool does with 429, 503, 400 and 401.

To run the same writes against a real InfluxDB 2.x/3.x/Cloud server, set INFLUX_TEST_V2_URL, INFLUX_TEST_V2_ORG,
INFLUX_TEST_V2_BUCKET and INFLUX_TEST_V2_TOKEN (see README): test_real_v2_server then writes a replayed drive.
"""

import json
import os
import re

import pytest

from firmware_bridge.sinks.influx import InfluxTarget, V2Writer
from firmware_bridge.sim import write_log
from firmware_bridge.spool.sender import Sender
from firmware_bridge.spool.store import Spool

from conftest import run_cli
from fake_influx_v2 import FakeInfluxV2

TOKEN = "s3cr3t-t0ken-do-not-print"


def v2_args(url, tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(f'[spool]\npath = "{tmp_path / "spool.db"}"\nflush_s = 0.2\ndrain_s = 1.0\n')
    return ["--influx-url", url, "--influx-api", "v2", "--influx-org", "kei-owners", "--influx-bucket", "drives",
            "--config", config]


@pytest.fixture(scope="module")
def drive_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("v2") / "drive.log"
    write_log(path, "wltc-jp", broadcast=False)
    return path


def test_replay_speaks_the_v2_write_protocol(tmp_path, drive_log):
    with FakeInfluxV2() as fake:
        result = run_cli("replay", drive_log, *v2_args(fake.url, tmp_path), env_token=TOKEN)
    assert result.returncode == 0, result.stderr
    assert fake.requests
    for request in fake.requests:
        assert request.path == "/api/v2/write"
        assert request.query["org"] == ["kei-owners"] and request.query["bucket"] == ["drives"]
        assert request.query["precision"] == ["ms"]
        assert request.headers["Content-Encoding"] == "gzip"
        assert request.headers["Authorization"] == f"Token {TOKEN}"
    lines = b"".join(r.body for r in fake.requests).decode().splitlines()
    assert any(line.startswith("vehicle,vehicle=kei ") for line in lines)
    assert all(re.fullmatch(r"\S+ \S+ \d{13}", line.replace("\\ ", "_")) for line in lines)  # ms timestamps
    assert TOKEN not in result.stdout + result.stderr


def test_retry_after_backoff_and_dead_letter(tmp_path):
    replies = [(429, {"Retry-After": "0"}, json.dumps({"code": "too many requests", "message": "slow down"})),
               (503, {}, ""),
               (204, {}, ""),
               (400, {}, json.dumps({"code": "invalid", "message": "partial write: field type conflict"}))]
    with FakeInfluxV2(replies=replies) as fake:
        target = InfluxTarget(url=fake.url, org="o", bucket="b", token=TOKEN, timeout_s=5)
        spool = Spool(tmp_path / "s.db", ["influx"])
        spool.append(b"vehicle,vehicle=kei speed_kmh=1.0 1000\n", 1)
        spool.append(b"vehicle,vehicle=kei speed_kmh=2.0 2000\n", 1)
        sender = Sender(spool, "influx", V2Writer(target), backoff_start_s=0.01, backoff_max_s=0.05)
        sender.start()
        deadline = __import__("time").monotonic() + 20
        while spool.pending_batches("influx") and __import__("time").monotonic() < deadline:
            __import__("time").sleep(0.05)
        sender.stop()
    assert [r.body for r in fake.requests] == [b"vehicle,vehicle=kei speed_kmh=1.0 1000\n"] * 3 + \
        [b"vehicle,vehicle=kei speed_kmh=2.0 2000\n"]
    assert spool.pending_batches("influx") == 0
    assert spool.counter("sent_points:influx") == 1
    [letter] = spool.dead_letters()
    assert "400" in letter.error and "partial write" in letter.error and letter.points == 1


def test_unauthorized_stops_with_one_clear_line_and_keeps_data(tmp_path, drive_log):
    with FakeInfluxV2(replies=[(401, {}, json.dumps({"code": "unauthorized", "message": "unauthorized access"}))]) as fake:
        result = run_cli("replay", drive_log, *v2_args(fake.url, tmp_path), "--influx-token", TOKEN)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("firmware-bridge: error: influx: credentials refused")
    assert len(fake.requests) == 1  # stopped at once, no hammering
    spool = Spool(tmp_path / "spool.db", ["influx"])
    assert spool.depth()[1] > 1000  # everything kept for when the token is fixed
    spool.close()
    assert TOKEN.encode() not in (tmp_path / "spool.db").read_bytes()
    assert TOKEN not in result.stdout + result.stderr


def test_token_never_in_help_logs_or_errors(tmp_path, drive_log):
    help_text = run_cli("replay", "--help").stdout
    assert TOKEN not in help_text
    result = run_cli("-v", "replay", drive_log, "--influx-url", "http://127.0.0.1:9", "--influx-api", "v2",
                     "--influx-org", "o", "--influx-bucket", "b", "--config", v2_args("x", tmp_path)[-1],
                     env_token=TOKEN)
    assert TOKEN not in result.stdout + result.stderr
    assert "still spooled" in result.stderr


@pytest.mark.skipif(not os.environ.get("INFLUX_TEST_V2_URL"), reason="set INFLUX_TEST_V2_URL to test a real v2 server")
def test_real_v2_server(tmp_path, drive_log):
    env = os.environ
    result = run_cli("replay", drive_log, "--influx-url", env["INFLUX_TEST_V2_URL"], "--influx-api", "v2",
                     "--influx-org", env.get("INFLUX_TEST_V2_ORG", ""), "--influx-bucket",
                     env.get("INFLUX_TEST_V2_BUCKET", "firmware_bridge_test"), env_token=env.get("INFLUX_TEST_V2_TOKEN", ""))
    assert result.returncode == 0, result.stderr
    assert "still spooled" not in result.stderr
