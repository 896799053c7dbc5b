"""The spool: bounds, dead letters, acknowledgement, and kill -9 at random moments."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.sinks.influx import REJECT, RETRY, STOP, WriteError
from firmware_bridge.spool.sender import Sender
from firmware_bridge.spool.store import Spool


def lines(n, size=100):
    return "".join(f"m v={i}i {n * 1000 + i}\n" for i in range(size)).encode()


def test_batches_are_sent_oldest_first_and_deleted_only_on_ack(tmp_path):
    spool = Spool(tmp_path / "s.db", ["a", "b"])
    ids = [spool.append(lines(n), 100) for n in range(3)]
    assert spool.oldest("a").id == ids[0] and spool.oldest("a").lines == lines(0)
    spool.acknowledge("a", ids[0])
    assert spool.oldest("a").id == ids[1]
    assert spool.oldest("b").id == ids[0]  # still waiting for the other sink
    assert spool.depth()[0] == 3
    spool.acknowledge("b", ids[0])
    assert spool.depth()[0] == 2
    spool.close()
    reopened = Spool(tmp_path / "s.db", ["a", "b"])  # survives a restart
    assert reopened.oldest("a").id == ids[1] and reopened.depth()[1] == 200


def test_bound_drops_oldest_and_counts(tmp_path):
    payload = bytes(random.Random(1).randbytes(20000).hex(), "ascii")  # incompressible-ish
    spool = Spool(tmp_path / "s.db", ["a"], max_bytes=100_000)
    for n in range(20):
        spool.append(payload, 10)
    batches, points, size = spool.depth()
    assert size <= 100_000 and batches < 20
    assert spool.counter("dropped_points") == (20 - batches) * 10
    assert spool.oldest("a").id == 20 - batches + 1  # the newest were kept
    clock = [1000.0]
    aged = Spool(tmp_path / "old.db", ["a"], max_age_s=60, monotonic=lambda: clock[0])
    aged.append(b"m v=1i 1\n", 1)
    clock[0] += 100  # 100 s of the agent running
    aged.append(b"m v=2i 2\n", 1)
    assert aged.depth()[0] == 1 and aged.counter("dropped_points") == 1


class ScriptedWriter:
    def __init__(self, outcomes):
        self.outcomes, self.calls = list(outcomes), []

    def write(self, body):
        self.calls.append(body)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


def test_sender_retries_dead_letters_and_stops_on_auth(tmp_path):
    spool = Spool(tmp_path / "s.db", ["x"])
    for n in range(3):
        spool.append(lines(n), 100)
    writer = ScriptedWriter([WriteError(RETRY, "HTTP 503", 503), None, WriteError(REJECT, "HTTP 400: partial write"),
                             WriteError(STOP, "credentials refused (HTTP 401: unauthorized)", 401)])
    sender = Sender(spool, "x", writer, backoff_start_s=0.01)
    with pytest.raises(WriteError):
        sender.send_one()  # 503: the batch stays
    assert spool.pending_batches("x") == 3
    assert sender.send_one() and spool.pending_batches("x") == 2  # acknowledged, deleted
    assert sender.send_one() and spool.pending_batches("x") == 1  # 400: set aside with the message
    assert [(d.sink, d.error, d.points) for d in spool.dead_letters()] == [("x", "HTTP 400: partial write", 100)]
    with pytest.raises(WriteError):
        sender.send_one()
    assert sender.stopped_error and "credentials refused" in sender.stopped_error
    assert spool.pending_batches("x") == 1  # kept for when the credentials are fixed


def test_backoff_grows_with_jitter_and_honours_retry_after(tmp_path):
    sender = Sender(Spool(tmp_path / "s.db", ["x"]), "x", None, backoff_start_s=1.0, backoff_max_s=8.0)
    delays = [sender._backoff_s(WriteError(RETRY, "503")) for _ in range(6)]
    assert all(0 <= d <= c for d, c in zip(delays, [1, 2, 4, 8, 8, 8]))
    assert sender._backoff_s(WriteError(RETRY, "429", 429, retry_after_s=30.0)) == 30.0


def test_kill_minus_nine_never_loses_a_committed_batch(tmp_path):
    """At least 20 SIGKILLs at random moments while writing: every batch the child saw committed is there
    (or was acknowledged), and the database is never corrupt."""
    path = tmp_path / "spool.db"
    rng = random.Random(20261124)
    committed, next_n = [], 0
    child = Path(__file__).with_name("spool_child.py")
    for _ in range(24):
        proc = subprocess.Popen([sys.executable, str(child), str(path), str(next_n)], stdout=subprocess.PIPE,
                                text=True)
        time.sleep(rng.uniform(0.3, 0.9))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        seen = [int(x) for x in out.split()]
        committed += seen
        next_n = (seen[-1] + 1) if seen else next_n
        spool = Spool(path, ["influx"])
        assert spool.integrity_ok()
        spool.close()
    assert len(committed) > 100
    spool = Spool(path, ["influx"])
    acknowledged = spool.counter("sent_points:influx") // 200  # batches the child's sender had confirmed
    stored = []
    while (batch := spool.oldest("influx")) is not None:
        stored.append(int(batch.lines.split(b"seq=")[1].split(b"i")[0]))
        spool.acknowledge("influx", batch.id)
    missing = set(committed) - set(stored)
    assert len(missing) <= acknowledged  # gone only if acknowledged...
    assert all(n < min(stored) for n in missing)  # ...and those were the oldest
    assert stored == sorted(stored)  # oldest first


def test_settling_a_batch_finds_its_sinks_by_index(tmp_path):
    """Sending a long backlog settles batch after batch: each lookup must not scan the whole pending table."""
    spool = Spool(tmp_path / "spool.db", ["influx"])
    for statement in ("SELECT 1 FROM pending WHERE batch_id=?", "DELETE FROM pending WHERE batch_id=?"):
        plan = " ".join(row[-1] for row in spool._db.execute(f"EXPLAIN QUERY PLAN {statement}", (1,)))
        assert "USING COVERING INDEX pending_batch" in plan or "USING INDEX pending_batch" in plan, plan
    spool.close()
