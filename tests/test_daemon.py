"""`firmware-bridge run` as systemd runs it: Type=notify readiness, watchdog pings, clean SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest


@pytest.mark.smoke
def test_notify_ready_watchdog_and_sigterm(tmp_path, influx, influx_db):
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(10)
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[bus]
interface = "virtual"
channel = "daemon-test"
[influx]
url = "{influx.url}"
api = "v1"
bucket = "{influx_db}"
[spool]
path = "{tmp_path / 'spool.db'}"
[output]
console = false
""")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")},
           "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen([sys.executable, "-m", "firmware_bridge", "run", "--config", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        messages = []
        deadline = time.monotonic() + 20
        while not any("WATCHDOG=1" in m for m in messages) and time.monotonic() < deadline:
            messages.append(listener.recv(4096).decode())
        assert messages[0].startswith("READY=1")
        assert any(m == "WATCHDOG=1" for m in messages)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        listener.close()
    assert "reading virtual:daemon-test" in err and f"InfluxDB v1 at {influx.url}" in err
    assert "still spooled" not in err  # the queue was flushed and nothing waits
