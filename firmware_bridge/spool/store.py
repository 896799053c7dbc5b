"""The durable spool: compressed line-protocol batches in SQLite (WAL), one commit per batch.

Why SQLite in WAL mode with ``synchronous=FULL``: a committed batch survives kill -9 and power loss, and a
half-written one is rolled back on the next open, so the file is never corrupt. Why batches, not points: an SD
card wears by commit count, so the agent commits about once a second.

The age bound runs on the spool's own clock: a monotonic clock carried across restarts (stored with each
commit), so a Raspberry Pi without a real-time clock that steps its wall clock by weeks (fake-hwclock, then
NTP) never drops points as "too old", and a step back never keeps them forever. The file is private (0600):
it holds everything the car said. If the file is deleted or replaced while the agent runs, the next commit
notices and writes what the old connection still holds into a new file at the same path.

Each batch is queued for every sink it is meant for (table ``pending``); a sink's sender reads its oldest
batch, and the batch is deleted once every sink has had its acknowledgement. The spool is bounded by payload
bytes and by age: the oldest batches go first and their points are counted as dropped (persisted, reported in
the ``agent`` measurement). Lines a server refused for good (a 400 partial write, a single line too large)
move to ``dead_letter`` with the server's message; they count toward the byte bound (the oldest go first when
it is reached), can be listed, and can be moved back to be sent again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_s REAL NOT NULL,      -- the spool's own clock at commit (see counter clock_ms), for the age bound
    points INTEGER NOT NULL,
    bytes INTEGER NOT NULL,       -- compressed payload size, for the size bound
    payload BLOB NOT NULL         -- zlib-compressed line protocol, one point per line
);
CREATE TABLE IF NOT EXISTS pending (
    sink TEXT NOT NULL,
    batch_id INTEGER NOT NULL REFERENCES batch(id),
    PRIMARY KEY (sink, batch_id)
) WITHOUT ROWID;
-- a batch's sinks are looked up by batch alone when it is settled or dropped (not a scan per batch)
CREATE INDEX IF NOT EXISTS pending_batch ON pending(batch_id);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    failed_s REAL NOT NULL,
    error TEXT NOT NULL,
    payload BLOB NOT NULL,
    points INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


log = logging.getLogger(__name__)

_TABLES = ("batch", "pending", "dead_letter", "counter")


def private_file(path: Path) -> None:
    """Create the file readable by its owner only (SQLite gives its -wal and -shm files the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


def connect(path: Path, **options) -> sqlite3.Connection:
    """A private (0600) WAL-mode database at ``path``, every commit durable: the spool's, and the ledger's."""
    private_file(path)
    db = sqlite3.connect(str(path), check_same_thread=False, **options)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error:
        db.close()
        raise
    return db


@dataclass(frozen=True)
class Batch:
    id: int
    points: int
    lines: bytes  # uncompressed line protocol


@dataclass(frozen=True)
class DeadLetter:
    id: int
    sink: str
    failed_s: float  # wall clock, Unix seconds: for people reading the list
    error: str       # the server's answer
    points: int
    bytes: int       # compressed


class Spool:
    """Thread-safe: one connection guarded by a lock (writers and senders are few and batches are big)."""

    def __init__(self, path: str | Path, sinks: list[str], max_bytes: int = 256 * 2**20,
                 max_age_s: float = 30 * 86400, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.sinks = list(sinks)
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._db, self._identity = self._open()
        row = self._db.execute("SELECT value FROM counter WHERE name = 'clock_ms'").fetchone()
        if row is None:  # a spool from before the spool's own clock: its wall-clock ages start again at 0
            self._db.execute("UPDATE batch SET created_s = 0")
        self._clock_base_s = (row[0] / 1000 if row else 0.0) - monotonic()
        self._forget_removed_sinks()

    def _open(self) -> tuple[sqlite3.Connection, tuple[int, int]]:
        db = connect(self.path, isolation_level=None)
        try:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(dead_letter)")}
            for column in ("points", "bytes") if "points" not in columns else ():  # a spool from before they were
                db.execute(f"ALTER TABLE dead_letter ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
            st = os.stat(self.path)
        except (sqlite3.Error, OSError):
            db.close()
            raise
        return db, (st.st_dev, st.st_ino)

    def clock_s(self) -> float:
        """The spool's clock: seconds the agent has run with this spool, never stepping."""
        return self._clock_base_s + self._monotonic()

    def _follow_file(self) -> None:
        """The file deleted or replaced since we opened it: the old connection's rows into a new file."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                return
        except FileNotFoundError:
            pass
        old = self._db
        fresh, identity = self._open()
        try:
            old.execute("ATTACH DATABASE ? AS fresh", (str(self.path),))
            try:
                old.execute("BEGIN IMMEDIATE")
                for table in _TABLES:
                    old.execute(f"INSERT OR REPLACE INTO fresh.{table} SELECT * FROM main.{table}")
                old.execute("COMMIT")
            finally:
                if old.in_transaction:
                    old.execute("ROLLBACK")
                old.execute("DETACH DATABASE fresh")
        except sqlite3.Error:
            fresh.close()
            raise
        old.close()
        self._db, self._identity = fresh, identity
        points = fresh.execute("SELECT COALESCE(SUM(points), 0) FROM batch").fetchone()[0]
        log.warning("spool %s was deleted or replaced while running: a new file holds its %d waiting points",
                    self.path, points)

    def _forget_removed_sinks(self) -> None:
        """Batches queued for a sink no longer configured would wait forever: release them."""
        marks = ",".join("?" * len(self.sinks))
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(f"DELETE FROM pending WHERE sink NOT IN ({marks})", self.sinks)
            self._db.execute("DELETE FROM batch WHERE id NOT IN (SELECT batch_id FROM pending)")

    # -- writing ---------------------------------------------------------------------------------------
    def append(self, lines: bytes, points: int) -> int:
        """Commit one batch for every sink; returns its id. Enforces the bounds afterwards."""
        payload = zlib.compress(lines, 6)
        with self._lock:
            self._follow_file()
        now_s = self.clock_s()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._save_clock(now_s)
            cur = self._db.execute("INSERT INTO batch (created_s, points, bytes, payload) VALUES (?, ?, ?, ?)",
                                   (now_s, points, len(payload), payload))
            batch_id = cur.lastrowid
            self._db.executemany("INSERT INTO pending (sink, batch_id) VALUES (?, ?)",
                                 [(sink, batch_id) for sink in self.sinks])
            self._enforce_bounds(now_s)
        return batch_id

    def _enforce_bounds(self, now_s: float) -> None:
        """Over the byte bound: the oldest dead letters go first, then the oldest batches; batches older than the
        age bound go too (in a transaction). Every point that goes is counted as dropped."""
        total = self._db.execute("SELECT (SELECT COALESCE(SUM(bytes), 0) FROM batch) + "
                                 "(SELECT COALESCE(SUM(bytes), 0) FROM dead_letter)").fetchone()[0]
        while total > self.max_bytes:
            row = self._db.execute("SELECT id, points, bytes FROM dead_letter ORDER BY id LIMIT 1").fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM dead_letter WHERE id = ?", (row[0],))
            self._add_counter("dropped_points", row[1])
            total -= row[2]
        while True:
            row = self._db.execute("SELECT id, created_s, points, bytes FROM batch ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return
            batch_id, created_s, points, size = row
            if total <= self.max_bytes and now_s - created_s <= self.max_age_s:
                return
            self._delete_batch(batch_id)
            self._add_counter("dropped_points", points)
            self._add_counter("dropped_batches", 1)
            total -= size

    def _save_clock(self, now_s: float) -> None:
        self._db.execute("INSERT INTO counter (name, value) VALUES ('clock_ms', ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (round(now_s * 1000),))

    def _delete_batch(self, batch_id: int) -> None:
        self._db.execute("DELETE FROM pending WHERE batch_id = ?", (batch_id,))
        self._db.execute("DELETE FROM batch WHERE id = ?", (batch_id,))

    def _add_counter(self, name: str, amount: int) -> None:
        self._db.execute("INSERT INTO counter (name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, amount))

    # -- sending ---------------------------------------------------------------------------------------
    def oldest(self, sink: str) -> Batch | None:
        with self._lock:
            row = self._db.execute(
                "SELECT b.id, b.points, b.payload FROM pending p JOIN batch b ON b.id = p.batch_id "
                "WHERE p.sink = ? ORDER BY p.batch_id LIMIT 1", (sink,)).fetchone()
        if row is None:
            return None
        return Batch(row[0], row[1], zlib.decompress(row[2]))

    def acknowledge(self, sink: str, batch_id: int, refused: list[tuple[bytes, int, str]] = ()) -> None:
        """The sink's server took the batch: forget it for that sink, and altogether once all have it. ``refused``:
        the parts of it the server refused for good (lines, points, its message), kept as dead letters."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for lines, points, error in refused:
                payload = zlib.compress(lines, 6)
                self._db.execute("INSERT INTO dead_letter (sink, failed_s, error, payload, points, bytes) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", (sink, time.time(), error, payload, points, len(payload)))
            sent = self._points(batch_id) - sum(points for _, points, _ in refused)
            self._add_counter(f"sent_points:{sink}", sent)
            self._settle(sink, batch_id)

    def retry_dead_letters(self, sink: str | None = None) -> tuple[int, int]:
        """Dead letters back to pending (e.g. after a schema fix on the server); returns (letters, points)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            rows = self._db.execute("SELECT id, sink, payload, points, bytes FROM dead_letter "
                                    "WHERE ? IS NULL OR sink = ? ORDER BY id", (sink, sink)).fetchall()
            for letter_id, letter_sink, payload, points, size in rows:
                cur = self._db.execute("INSERT INTO batch (created_s, points, bytes, payload) VALUES (?, ?, ?, ?)",
                                       (self.clock_s(), points, size, payload))
                self._db.execute("INSERT INTO pending (sink, batch_id) VALUES (?, ?)", (letter_sink, cur.lastrowid))
                self._db.execute("DELETE FROM dead_letter WHERE id = ?", (letter_id,))
        return len(rows), sum(row[3] for row in rows)

    def _points(self, batch_id: int) -> int:
        row = self._db.execute("SELECT points FROM batch WHERE id = ?", (batch_id,)).fetchone()
        return row[0] if row else 0

    def _settle(self, sink: str, batch_id: int) -> None:
        self._db.execute("DELETE FROM pending WHERE sink = ? AND batch_id = ?", (sink, batch_id))
        if self._db.execute("SELECT 1 FROM pending WHERE batch_id = ? LIMIT 1", (batch_id,)).fetchone() is None:
            self._db.execute("DELETE FROM batch WHERE id = ?", (batch_id,))

    # -- health ----------------------------------------------------------------------------------------
    def depth(self) -> tuple[int, int, int]:
        """(batches, points, compressed bytes) still waiting."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*), COALESCE(SUM(points), 0), COALESCE(SUM(bytes), 0) "
                                    "FROM batch").fetchone()

    def pending_batches(self, sink: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM pending WHERE sink = ?", (sink,)).fetchone()[0]

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counter WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute("SELECT id, sink, failed_s, error, points, bytes FROM dead_letter "
                                    "ORDER BY id").fetchall()
        return [DeadLetter(*row) for row in rows]

    def dead_letter_depth(self) -> tuple[int, int, int]:
        """(letters, points, compressed bytes) set aside."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*), COALESCE(SUM(points), 0), COALESCE(SUM(bytes), 0) "
                                    "FROM dead_letter").fetchone()

    def oldest_point_ms(self) -> int | None:
        """The oldest point's timestamp still waiting (ms), read from the oldest batch's lines."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM batch ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        stamps = [int(line.rsplit(b" ", 1)[1]) for line in zlib.decompress(row[0]).splitlines() if line]
        return min(stamps) if stamps else None

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        """Closes the file, keeping the spool's clock for the next start."""
        with self._lock:
            try:
                self._save_clock(self.clock_s())
            except sqlite3.Error:
                pass  # the disk refuses: the clock resumes from the last commit
            self._db.close()
