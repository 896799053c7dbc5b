"""Faults under the spool: a full disk (a real, small tmpfs), injected ENOSPC and EIO, the file deleted while
running, wall-clock steps of ±40 days, and systemd's watchdog when the spool cannot be written. Each test counts
points produced = delivered + still spooled + counted as dropped."""

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from firmware_bridge.spool.store import Spool

from conftest import T0, obd_drive, run_cli, write_log
from faults import Agent, FaultySpool, count_in, fill, remove_spool, small_filesystem


def test_disk_full_is_retried_and_nothing_is_lost_when_space_returns(tmp_path, influx, influx_db):
    with small_filesystem(tmp_path / "small", "8m") as small:
        agent = Agent.start(small / "spool.db", "http://127.0.0.1:9", influx_db)  # no server yet: all spools
        agent.produce(0, 500)
        agent.wait_committed()
        filler = small / "filler"
        fill(filler)
        agent.produce(500, 3000)  # the disk is full: these wait in memory
        deadline = time.monotonic() + 20
        while agent.writer.failing_for_s() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.writer.failing_for_s() > 0, "the full disk was never felt"
        assert "full" in agent.writer.last_error
        assert agent.writer._thread.is_alive()  # the writer lives on
        filler.unlink()  # space comes back
        agent.produce(3500, 500)
        agent.wait_committed()
        deadline = time.monotonic() + 20
        while agent.writer.points_committed < 4000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.writer.failing_for_s() == 0
        agent.sender.writer = type(agent.sender.writer)(agent.sender.writer.target.__class__(
            url=influx.url, api="v1", bucket=influx_db))  # the server becomes reachable
        counts = agent.finish()
    assert counts == {"produced": 4000, "delivered": 4000, "spooled": 0, "dead_lettered": 0, "dropped": 0}
    assert count_in(influx, influx_db) == 4000


def test_a_full_disk_longer_than_memory_drops_and_counts(tmp_path, influx, influx_db):
    agent = Agent.start(tmp_path / "spool.db", influx.url, influx_db, spool_class=FaultySpool, queue_points=200,
                        batch_points=50)
    agent.spool.fail_appends = 10**9
    agent.produce(0, 1000, pause_s=0.0005)
    time.sleep(0.5)
    assert agent.writer.dropped > 0 and agent.writer._thread.is_alive()
    agent.spool.fail_appends = 0
    agent.produce(1000, 100)
    counts = agent.finish()
    assert counts["dropped"] == agent.writer.dropped > 0
    assert counts["delivered"] == count_in(influx, influx_db) >= 100


@pytest.mark.parametrize("error", ["database or disk is full", "disk I/O error"])
def test_injected_commit_and_read_errors_are_retried(tmp_path, influx, influx_db, error):
    agent = Agent.start(tmp_path / "spool.db", influx.url, influx_db, spool_class=FaultySpool)
    agent.spool.error = error
    agent.spool.fail_appends = 5
    agent.spool.fail_reads = 5
    agent.produce(0, 2000)
    counts = agent.finish()
    assert counts == {"produced": 2000, "delivered": 2000, "spooled": 0, "dead_lettered": 0, "dropped": 0}
    assert count_in(influx, influx_db) == 2000
    assert agent.sender._thread is not None


def test_spool_file_deleted_while_running(tmp_path, influx, influx_db):
    path = tmp_path / "spool.db"
    agent = Agent.start(path, "http://127.0.0.1:9", influx_db)  # nothing delivered: everything waits
    agent.produce(0, 1000)
    agent.wait_committed()
    time.sleep(0.1)
    remove_spool(path)
    agent.produce(1000, 1000)
    agent.wait_committed()
    time.sleep(0.2)
    assert path.exists()
    reopened = Spool(path, ["influx"])
    assert reopened.depth()[1] == 2000  # what the deleted file held was written into the new one
    reopened.close()
    counts = agent.finish(drain_s=0.5)
    assert counts == {"produced": 2000, "delivered": 0, "spooled": 2000, "dead_lettered": 0, "dropped": 0}
    agent = Agent.start(path, influx.url, influx_db)  # the next start delivers them all
    counts = agent.finish()
    assert counts["delivered"] == 2000 and count_in(influx, influx_db) == 2000


def test_spool_files_are_private(tmp_path):
    spool = Spool(tmp_path / "state" / "spool.db", ["influx"])
    spool.append(b"m v=1i 1\n", 1)
    for path in (tmp_path / "state" / "spool.db", tmp_path / "state" / "spool.db-wal"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    spool.close()


@pytest.mark.parametrize("step_days", [40, -40])
def test_wall_clock_steps_never_age_points_out(tmp_path, monkeypatch, step_days):
    """A Pi without an RTC: fake-hwclock's time, then NTP steps the clock by weeks."""
    spool = Spool(tmp_path / "spool.db", ["influx"], max_age_s=3600)
    real_time = time.time
    for n in range(10):
        if n == 5:
            monkeypatch.setattr(time, "time", lambda: real_time() + step_days * 86400)
        spool.append(f"m v={n}i {n}\n".encode(), 1)
    assert spool.depth()[1] == 10 and spool.counter("dropped_points") == 0
    spool.close()


def test_age_bound_runs_on_the_spools_own_clock_across_restarts(tmp_path):
    clock = [100.0]
    spool = Spool(tmp_path / "spool.db", ["influx"], max_age_s=3600, monotonic=lambda: clock[0])
    spool.append(b"m v=1i 1\n", 1)
    clock[0] += 1800
    spool.close()
    clock[0] = 5.0  # a reboot: the monotonic clock starts again
    spool = Spool(tmp_path / "spool.db", ["influx"], max_age_s=3600, monotonic=lambda: clock[0])
    clock[0] += 1000
    spool.append(b"m v=2i 2\n", 1)
    assert spool.depth()[1] == 2  # 2800 s of running: still young
    clock[0] += 1000
    spool.append(b"m v=3i 3\n", 1)
    assert spool.depth()[1] == 2 and spool.counter("dropped_points") == 1  # 3800 s: the first went
    spool.close()


@pytest.mark.parametrize("step_days", [40, -40])
def test_replay_with_frame_times_stepping_delivers_every_point(tmp_path, influx, influx_db, step_days):
    speeds = [min(i * 1.0, 40.0) for i in range(90)] + [0.0] * 20
    frames = obd_drive(speeds) + obd_drive(speeds, t0=T0 + step_days * 86400 + 200)
    log = tmp_path / "stepped.log"
    write_log(log, frames)
    config = tmp_path / "agent.toml"
    config.write_text(f'[spool]\npath = "{tmp_path / "spool.db"}"\nmax_age_days = 1\nflush_s = 0.05\n')
    result = run_cli("replay", log, "--influx-url", influx.url, "--influx-api", "v1", "--influx-bucket",
                     influx_db, "--out", tmp_path / "points.lp", "--config", config)
    assert result.returncode == 0, result.stderr
    produced = len((tmp_path / "points.lp").read_text().splitlines())
    assert f"{produced} points sent" in result.stderr, result.stderr
    assert "dropped" not in result.stderr and "still spooled" not in result.stderr


def test_watchdog_is_starved_while_the_spool_cannot_be_written(tmp_path):
    """The daemon (here `demo`, the same live loop with a simulated car) under a systemd watchdog of 1 s: a full
    disk for longer than that stops the pings; when space returns they start again, and nothing died."""
    with small_filesystem(tmp_path / "small", "4m") as small:
        notify_path = tmp_path / "notify.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(notify_path))
        listener.settimeout(1.0)
        config = tmp_path / "agent.toml"
        config.write_text(f'[spool]\npath = "{small / "spool.db"}"\n[output]\nconsole = false\n')
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")},
               "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"}
        proc = subprocess.Popen([sys.executable, "-m", "firmware_bridge", "demo", "--speedup", "20", "--config",
                                 str(config), "--influx-url", "http://127.0.0.1:9", "--influx-api", "v1"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        pings = []  # monotonic times of WATCHDOG=1

        def listen():
            while proc.poll() is None:
                try:
                    if listener.recv(4096).decode() == "WATCHDOG=1":
                        pings.append(time.monotonic())
                except OSError:
                    pass

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while len(pings) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(pings) >= 3, "no watchdog pings"
            fill(small / "filler")
            full_at = time.monotonic()
            time.sleep(6)
            starved = [t for t in pings if t > full_at + 2.5]
            (small / "filler").unlink()
            freed_at = time.monotonic()
            time.sleep(3)
            resumed = [t for t in pings if t > freed_at]
            proc.terminate()
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            listener.close()
    assert starved == [], "the watchdog was fed while the spool could not be written"
    assert resumed, "the watchdog was not fed again once space returned"
    assert "no longer feeding systemd's watchdog" in err and "cannot commit" in err
    assert "commits work again" in err
    assert "Traceback" not in err


def test_the_calibration_ledger_is_private(tmp_path):
    from firmware_bridge.calibration.ledger import Ledger

    ledger = Ledger(tmp_path / "state" / "ledger.db")
    ledger.close()
    assert stat.S_IMODE((tmp_path / "state" / "ledger.db").stat().st_mode) == 0o600


def spooled_numbers(path):
    spool = Spool(path, ["influx"])
    try:
        assert spool.integrity_ok()
        numbers = set()
        rows = spool._db.execute("SELECT payload FROM batch").fetchall()
        for (payload,) in rows:
            numbers |= {int(n.split(b"i")[0]) for n in zlib.decompress(payload).split(b"seq=")[1:]}
        return numbers, spool.counter("dropped_points")
    finally:
        spool.close()


@pytest.mark.parametrize("phase", ["append", "commit", "send", "acknowledge"])
def test_sigkill_in_every_phase_loses_no_committed_point(tmp_path, influx, influx_db, phase):
    """Killed three times in the phase, restarted each time: every point whose commit returned is delivered or
    still spooled (produced = delivered + spooled, nothing dropped), and once a run completes all are in InfluxDB
    exactly once."""
    path = tmp_path / "spool.db"
    child = [sys.executable, str(Path(__file__).with_name("fault_child.py")), str(path), influx.url, influx_db]
    committed, start = set(), 0
    for kill_at in (2, 5, 3):
        proc = subprocess.run([*child, phase, str(kill_at), str(start), "400"], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == -signal.SIGKILL, (phase, proc.returncode, proc.stderr)
        committed |= {int(n) for n in proc.stdout.split()}
        start += 400
        spooled, dropped = spooled_numbers(path)
        delivered = {row["seq"] for row in influx.rows("SELECT seq FROM m", influx_db)}
        assert committed <= delivered | spooled, sorted(committed - delivered - spooled)[:10]
        assert dropped == 0
    assert len(committed) >= 3 * 50  # each run committed batches before it died
    final = subprocess.run([*child, "none", "0", str(start), "0"], capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    spooled, dropped = spooled_numbers(path)
    delivered = [row["seq"] for row in influx.rows("SELECT seq FROM m", influx_db)]
    assert spooled == set() and dropped == 0
    assert committed <= set(delivered) and len(delivered) == len(set(delivered))  # once each (same series, time)
