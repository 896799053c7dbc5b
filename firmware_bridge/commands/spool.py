"""``firmware-bridge spool status|flush|dead-letters [--retry]``: look into the spool of `run` or `replay`, send
what waits in it, and list or re-send what the server refused.

The same ``--config``, ``INFLUX_*`` environment and ``--influx-*`` options as `run`, so the same spool and the
same server. ``flush`` exits 0 only when the spool is empty afterwards (nothing pending, no dead letters);
otherwise 1, with the counts and the reason.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from firmware_bridge.errors import InputError
from firmware_bridge.json_output import json_text


def add_parser(sub, add_influx_options) -> None:
    p = sub.add_parser("spool", help="the spool of run/replay: status, flush to the server, dead letters")
    p.add_argument("action", choices=("status", "flush", "dead-letters"))
    p.add_argument("--retry", action="store_true", help="dead-letters: move them back to pending (then flush)")
    p.add_argument("--replay", action="store_true", help="the spool of `replay` (replay-spool.db) instead of `run`'s")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (its [spool] path and [influx])")
    p.add_argument("--format", choices=("json", "table"), default="table")
    add_influx_options(p)
    p.set_defaults(func=cmd_spool)


def spool_path(config: dict, replay: bool = False) -> Path:
    from firmware_bridge.sinks.outputs import default_state_dir

    return Path(config["spool"]["path"] or default_state_dir() / ("replay-spool.db" if replay else "spool.db"))


def _utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def status(spool) -> dict:
    from firmware_bridge.sinks.outputs import SINK_NAME

    batches, points, size = spool.depth()
    letters, letter_points, letter_bytes = spool.dead_letter_depth()
    return {"path": str(spool.path), "pending_batches": batches, "pending_points": points, "bytes": size,
            "oldest_point": _utc(spool.oldest_point_ms()),
            "dead_letters": {"count": letters, "points": letter_points, "bytes": letter_bytes},
            "dropped_points": spool.counter("dropped_points"), "sent_points": spool.counter(f"sent_points:{SINK_NAME}")}


def _status_table(s: dict) -> str:
    oldest = f", oldest point {s['oldest_point']}" if s["oldest_point"] else ""
    d = s["dead_letters"]
    return (f"spool {s['path']}\n"
            f"  pending: {s['pending_points']} points in {s['pending_batches']} batches, {s['bytes'] / 1024:.1f} KiB"
            f"{oldest}\n"
            f"  dead letters: {d['count']} ({d['points']} points, {d['bytes'] / 1024:.1f} KiB)\n"
            f"  so far: {s['sent_points']} points sent, {s['dropped_points']} dropped (spool bounds)")


def _letters(spool, fmt: str) -> str:
    rows = spool.dead_letters()
    if fmt == "json":
        return json_text([{"id": d.id, "sink": d.sink, "failed": _utc(round(d.failed_s * 1000)), "points": d.points,
                           "bytes": d.bytes, "error": d.error} for d in rows], indent=2)
    if not rows:
        return f"no dead letters in {spool.path}"
    lines = [f"{'id':>5}  {'failed (UTC)':20}  {'points':>6}  error"]
    lines += [f"{d.id:>5}  {_utc(round(d.failed_s * 1000))[:19]:20}  {d.points:>6}  {d.error}" for d in rows]
    return "\n".join(lines)


def flush(spool, config: dict) -> tuple[bool, str]:
    """Send what is pending, as long as batches go through (``drain_s`` of no progress ends it).
    Returns (the spool is empty, a one-line summary)."""
    from firmware_bridge.sinks.influx import make_writer
    from firmware_bridge.sinks.outputs import SINK_NAME, influx_target
    from firmware_bridge.spool.sender import Sender

    target = influx_target(config)
    if target is None:
        raise InputError("spool flush: no InfluxDB configured (--influx-url, INFLUX_URL or [influx] url)")
    sender = Sender(spool, SINK_NAME, make_writer(target), backoff_start_s=0.5, backoff_max_s=5.0)
    sender.start()
    sent, progress_at = 0, time.monotonic()
    while not sender.idle() and time.monotonic() - progress_at < max(1.0, config["spool"]["drain_s"]):
        time.sleep(0.05)
        if sender.points_sent != sent:
            sent, progress_at = sender.points_sent, time.monotonic()
    sender.stop()
    s = status(spool)
    letters = s["dead_letters"]
    summary = f"{sender.points_sent} points sent to {target.describe()}"
    empty = not s["pending_points"] and not letters["count"]
    if not empty:
        reason = sender.stopped_error or sender.last_error
        summary += (f"; {s['pending_points']} points still spooled, {letters['points']} points in "
                    f"{letters['count']} dead letters" + (f": {reason}" if reason else ""))
    return empty, summary


def cmd_spool(args) -> int:
    from firmware_bridge.cli import _config
    from firmware_bridge.sinks.outputs import open_spool

    config = _config(args)
    path = spool_path(config, args.replay)
    if not path.exists():
        print(f"spool {path}: none yet (nothing was ever spooled there)", file=sys.stderr)
        return 0
    spool = open_spool(path)
    try:
        if args.action == "status":
            s = status(spool)
            print(json_text(s, indent=2) if args.format == "json" else _status_table(s))
            return 0
        if args.action == "dead-letters":
            if args.retry:
                letters, points = spool.retry_dead_letters()
                print(f"spool: {letters} dead letters ({points} points) moved back to pending; "
                      f"`firmware-bridge spool flush` sends them", file=sys.stderr)
                return 0
            print(_letters(spool, args.format))
            return 0
        empty, summary = flush(spool, config)
        print(f"spool: {summary}", file=sys.stderr)
        return 0 if empty else 1
    finally:
        spool.close()
