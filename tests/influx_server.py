"""A real InfluxDB 1.x server (Debian's `influxd`) on a free loopback port, its data in a temp dir."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InfluxServer:
    def __init__(self, root: Path) -> None:
        self.binary = shutil.which("influxd") or "/usr/bin/influxd"
        if not Path(self.binary).exists():
            raise RuntimeError("influxd not found: install Debian's influxdb package (make test does)")
        self.root = root
        self.config = root / "influxdb.conf"
        self._pick_ports()
        self.process: subprocess.Popen | None = None

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.config.write_text(CONFIG.format(root=self.root, port=self.port, rpc_port=free_port()))
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        for attempt in range(3):  # a port found free can be taken by another process before influxd binds it
            if attempt:
                self._pick_ports()
            self.process = subprocess.Popen([self.binary, "-config", str(self.config)], stdout=subprocess.DEVNULL,
                                            stderr=open(self.root / "influxd.log", "ab"))
            if self._wait_ready():
                return
        raise RuntimeError(f"influxd did not start: {(self.root / 'influxd.log').read_text()[-2000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                    if r.status == 204:
                        return True
            except OSError:
                time.sleep(0.1)
        self.stop()
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None

    def query(self, q: str, db: str | None = None) -> list[dict]:
        """InfluxQL; returns the series of the first statement (epoch milliseconds)."""
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(self.url + "/query", data=data, timeout=30) as r:
            result = json.loads(r.read())["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        return result.get("series", [])

    def rows(self, q: str, db: str) -> list[dict]:
        """Rows of a single-series query as dicts."""
        series = self.query(q, db)
        if not series:
            return []
        columns = series[0]["columns"]
        return [dict(zip(columns, values)) for s in series for values in s["values"]]

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')
