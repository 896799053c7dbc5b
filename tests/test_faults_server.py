"""Faults on the server's side, with the real InfluxDB and a small stub in front of it: a database that does not
exist (404), too large a batch (413), a partial write (400), NaN and infinities, a TLS error, a refused
connection, and v1 credentials. Each test counts points produced = delivered + still spooled + dead-lettered
(+ dropped, none here)."""

import base64
import json
import math
import struct
import urllib.request

import can
import pytest

from firmware_bridge.spool.store import Spool

from conftest import T0, obd_drive, run_cli, write_log
from fake_influx_v2 import FakeInfluxV2
from test_influx_v1 import assert_db_matches_file


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    speeds = [min(i * 0.5, 50.0) for i in range(101)] + [50.0] * 40 + [50.0 - i for i in range(1, 51)] + [0.0] * 20
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    write_log(path, obd_drive(speeds))
    return path


def config_file(tmp_path, batch_points=100, **extra):
    lines = [f'path = "{tmp_path / "spool.db"}"', "flush_s = 0.05", "drain_s = 2.0", f"batch_points = {batch_points}"]
    text = "[spool]\n" + "\n".join(lines) + "\n"
    for section, values in extra.items():
        text += f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def influx_args(url, db, config, api="v1"):
    return ["--influx-url", url, "--influx-api", api, "--influx-bucket", db, "--config", config]


def replay(log, url, db, tmp_path, *more, config=None):
    config = config or config_file(tmp_path)
    return run_cli("replay", log, *influx_args(url, db, config), "--out", tmp_path / "points.lp", *more,
                   state_home=tmp_path)


def spool(action, url, db, tmp_path, *more):
    return run_cli("spool", action, *influx_args(url, db, tmp_path / "agent.toml"), *more, state_home=tmp_path)


def status(tmp_path, url="http://127.0.0.1:9", db="x"):
    result = spool("status", url, db, tmp_path, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def produced(tmp_path) -> int:
    return len((tmp_path / "points.lp").read_text().splitlines())


def sent(stderr: str) -> int:
    [line] = [line for line in stderr.splitlines() if line.startswith("replay: ") and "points sent" in line]
    return int(line.split("points sent")[0].rsplit(";", 1)[-1].split()[-1])


def test_missing_database_exits_1_keeps_the_spool_and_flush_delivers_later(tmp_path, influx, drive):
    db = "created_later"
    result = replay(drive, influx.url, db, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "404" in result.stderr and "database or bucket not found" in result.stderr
    assert "not every point was delivered" in result.stderr and "Traceback" not in result.stderr
    s = status(tmp_path)
    assert s["pending_points"] == produced(tmp_path) and s["dead_letters"]["count"] == 0  # intact
    assert s["oldest_point"].startswith("2026-04-01T09:00")
    table = spool("status", influx.url, db, tmp_path).stdout
    assert f"pending: {produced(tmp_path)} points" in table and "dead letters: 0" in table
    result = spool("flush", influx.url, db, tmp_path)  # still missing: 1, with the reason
    assert result.returncode == 1 and "404" in result.stderr
    influx.create_database(db)
    result = spool("flush", influx.url, db, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{produced(tmp_path)} points sent" in result.stderr
    assert status(tmp_path)["pending_points"] == 0
    assert_db_matches_file(influx, db, tmp_path / "points.lp")


def test_413_splits_the_batch_until_the_server_takes_it(tmp_path, influx, influx_db, drive):
    limit = 37
    with FakeInfluxV2(upstream=influx.url, answer=lambda w: (413, {}, '{"error":"request entity too large"}')
                      if len(w.lines) > limit else None) as stub:
        result = replay(drive, stub.url, influx_db, tmp_path)
    assert result.returncode == 0, result.stderr
    assert any(len(w.lines) > limit for w in stub.requests)  # the server refused big ones...
    assert sent(result.stderr) == produced(tmp_path)  # ...and got every point in halves
    assert status(tmp_path)["dead_letters"]["count"] == 0
    assert_db_matches_file(influx, influx_db, tmp_path / "points.lp")


def test_partial_write_dead_letters_only_that_batch_and_retry_resends_it(tmp_path, influx, influx_db, drive):
    # a field type conflict on the trip measurement: InfluxDB answers 400 "partial write" for batches with trips
    request = urllib.request.Request(f"{influx.url}/write?db={influx_db}&precision=ms",
                                     data=f'trip,vehicle=kei distance_km="text" {int(T0 * 1000)}'.encode())
    urllib.request.urlopen(request, timeout=10).read()
    result = replay(drive, influx.url, influx_db, tmp_path, config=config_file(tmp_path, batch_points=10))
    assert result.returncode == 1, result.stderr
    s = status(tmp_path)
    letters = s["dead_letters"]
    assert letters["count"] >= 1 and s["pending_points"] == 0
    assert produced(tmp_path) == sent(result.stderr) + letters["points"]
    assert letters["points"] < produced(tmp_path) / 2  # only the batches with trip points
    assert "dead letters" in result.stderr
    listed = spool("dead-letters", influx.url, influx_db, tmp_path, "--format", "json")
    assert listed.returncode == 0
    entries = json.loads(listed.stdout)
    assert all("partial write" in e["error"] and "field type conflict" in e["error"] for e in entries)
    assert sum(e["points"] for e in entries) == letters["points"]
    table = spool("dead-letters", influx.url, influx_db, tmp_path)
    assert "partial write" in table.stdout
    agent = [line for line in (tmp_path / "points.lp").read_text().splitlines() if line.startswith("agent,")]
    assert "dead_letter_points=" in agent[-1]
    # the server's other points of those batches were stored (a partial write keeps the good lines)
    vehicle_times = {line.rsplit(" ", 1)[1] for line in (tmp_path / "points.lp").read_text().splitlines()
                     if line.startswith("vehicle,")}
    assert influx.rows("SELECT count(speed_kmh) FROM vehicle", influx_db)[0]["count"] == len(vehicle_times)
    flushed = spool("flush", influx.url, influx_db, tmp_path)
    assert flushed.returncode == 1 and "dead letters" in flushed.stderr  # not empty while letters wait
    influx.query("DROP MEASUREMENT trip", influx_db)  # the schema is fixed on the server
    assert spool("dead-letters", influx.url, influx_db, tmp_path, "--retry").returncode == 0
    flushed = spool("flush", influx.url, influx_db, tmp_path)
    assert flushed.returncode == 0, flushed.stderr
    assert f"{letters['points']} points sent" in flushed.stderr
    assert_db_matches_file(influx, influx_db, tmp_path / "points.lp")


def test_nan_and_infinities_are_never_written(tmp_path, influx, influx_db):
    dbc = tmp_path / "float.dbc"
    dbc.write_text('VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: ECU\n\n'
                   'BO_ 768 FLOATS: 8 ECU\n SG_ value : 0|32@1- (1,0) [0|0] "" Vector__XXX\n'
                   ' SG_ other : 32|32@1- (1,0) [0|0] "" Vector__XXX\n\n'
                   'SIG_VALTYPE_ 768 value : 1;\nSIG_VALTYPE_ 768 other : 1;\n')
    values = [math.nan, 1.0, math.inf, 2.0, -math.inf, 3.0] * 10
    frames = [can.Message(timestamp=T0 + i, arbitration_id=768, is_extended_id=False,
                          data=struct.pack("<ff", v, 0.5)) for i, v in enumerate(values)]
    log = tmp_path / "floats.log"
    write_log(log, frames)
    config = config_file(tmp_path, output={"raw_signals": True})
    result = replay(log, influx.url, influx_db, tmp_path, "--dbc", dbc, config=config)
    assert result.returncode == 0, result.stderr
    assert "NaN or infinite field values left out" in result.stderr
    text = (tmp_path / "points.lp").read_text()
    assert "nan" not in text and "inf" not in text
    assert status(tmp_path)["dead_letters"]["count"] == 0
    assert sent(result.stderr) == produced(tmp_path)
    assert influx.rows("SELECT count(value) FROM signal", influx_db)[0]["count"] == 30
    assert influx.rows("SELECT count(other) FROM signal", influx_db)[0]["count"] == 60


@pytest.mark.parametrize(("url", "reason"), [("https://127.0.0.1:{port}", "SSL"),
                                             ("http://127.0.0.1:9", "Connection refused")])
def test_unreachable_server_exits_1_naming_the_reason(tmp_path, influx, influx_db, drive, url, reason):
    url = url.format(port=influx.port)
    result = replay(drive, url, influx_db, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("replay: not every point was delivered") and reason in last, result.stderr
    assert f"{produced(tmp_path)} points still spooled" in last
    assert status(tmp_path)["pending_points"] == produced(tmp_path)


def test_v1_password_travels_in_a_header_only(tmp_path, drive):
    password = "hunter2-kei-secret"
    with FakeInfluxV2() as stub:
        result = run_cli("replay", drive, *influx_args(stub.url, "kei", config_file(tmp_path)), state_home=tmp_path,
                         env_token=f"driver:{password}")
    assert result.returncode == 0, result.stderr
    assert stub.requests
    for write in stub.requests:
        assert password not in str(write.query) and set(write.query) == {"db", "precision"}
        assert write.headers["Authorization"] == "Basic " + base64.b64encode(f"driver:{password}".encode()).decode()
    assert password not in result.stdout + result.stderr
    with FakeInfluxV2(answer=lambda w: (401, {}, '{"error":"authorization failed"}')) as stub:
        refused = run_cli("-v", "replay", drive, *influx_args(stub.url, "kei", config_file(tmp_path)),
                          state_home=tmp_path, env_token=f"driver:{password}")
    assert refused.returncode == 2 and "credentials refused" in refused.stderr
    assert password not in refused.stdout + refused.stderr
    for name in ("spool.db", "spool.db-wal"):
        if (tmp_path / name).exists():
            assert password.encode() not in (tmp_path / name).read_bytes()


def test_dead_letters_count_toward_the_byte_bound(tmp_path):
    spool = Spool(tmp_path / "s.db", ["influx"], max_bytes=60_000)
    noise = bytes(__import__("random").Random(3).randbytes(20_000).hex(), "ascii")  # ~20 kB compressed
    first = spool.append(noise, 10)
    spool.acknowledge("influx", first, refused=[(noise, 10, "HTTP 400: partial write")])
    assert spool.dead_letter_depth()[:2] == (1, 10)
    for _ in range(2):
        spool.append(noise, 10)
    assert spool.dead_letter_depth()[0] == 0  # the oldest dead letter went first...
    assert spool.counter("dropped_points") == 10 and spool.depth()[1] == 20  # ...counted; the batches stay
    spool.close()


def test_v2_errors_show_the_servers_reason(tmp_path, influx, drive):
    body = json.dumps({"code": "not found", "message": 'bucket "drives" not found'})
    with FakeInfluxV2(answer=lambda w: (404, {}, body)) as stub:
        missing = run_cli("replay", drive, *influx_args(stub.url, "drives", config_file(tmp_path), api="v2"),
                          "--influx-org", "o", state_home=tmp_path, env_token="t")
    assert missing.returncode == 1
    assert 'database or bucket not found (HTTP 404: bucket "drives" not found)' in missing.stderr
    assert len(stub.requests) == 1  # stopped at once
    tls = run_cli("replay", drive, *influx_args(f"https://127.0.0.1:{influx.port}", "drives", config_file(tmp_path),
                                                api="v2"), "--influx-org", "o", state_home=tmp_path, env_token="t")
    assert tls.returncode == 1 and "SSL" in tls.stderr.strip().splitlines()[-1], tls.stderr
    assert "Traceback" not in missing.stderr + tls.stderr


def test_replay_onto_a_full_disk_ends_with_the_counts_and_exit_1(tmp_path, influx, influx_db, drive):
    """The spool on a real, full tmpfs and a queue of 100 points: no hang, no thread dies, exit 1, and every point
    is delivered, still spooled or counted as dropped."""
    from faults import fill, small_filesystem

    with small_filesystem(tmp_path / "small", "2m") as small:
        Spool(small / "spool.db", ["influx"]).close()
        (tmp_path / "agent.toml").write_text(f'[spool]\npath = "{small / "spool.db"}"\nqueue_points = 100\n'
                                             f'flush_s = 0.05\ndrain_s = 2.0\n')
        fill(small / "filler")
        opened = run_cli("replay", drive, *influx_args(influx.url, influx_db, tmp_path / "agent.toml"),
                         state_home=tmp_path)  # not even room to open it: one line, exit 1
        assert opened.returncode == 1 and opened.stderr.startswith("firmware-bridge: error: cannot open the spool")
        (small / "filler").unlink()
        (small / "reserve").write_bytes(b"\0" * 96 * 1024)  # room to open it (WAL index), little more
        fill(small / "filler")
        (small / "reserve").unlink()
        result = run_cli("replay", drive, *influx_args(influx.url, influx_db, tmp_path / "agent.toml"),
                         "--out", tmp_path / "points.lp", state_home=tmp_path)
        (small / "filler").unlink()
        pending = status(tmp_path)["pending_points"]
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("replay: not every point was delivered") and "full" in last, result.stderr
    assert "Traceback" not in result.stderr
    [summary] = [line for line in result.stderr.splitlines() if line.startswith("replay: ") and "sent" in line]
    dropped = int(summary.split(" points dropped")[0].rsplit("; ", 1)[1]) if "dropped" in summary else 0
    assert produced(tmp_path) == sent(result.stderr) + pending + dropped
    assert pending + dropped > 0  # the full disk was felt: committing or acknowledging
