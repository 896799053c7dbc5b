"""The v1 writer against a real InfluxDB 1.x server: live drives and replays land exactly, outages lose nothing."""

import json

import pytest

from firmware_bridge.config import defaults
from firmware_bridge.sim import load_cycle, write_log

from conftest import run_cli
from livedrive import live_drive


def agent_config(influx, db, tmp_path, **spool):
    config = defaults()
    config["influx"].update(url=influx.url, api="v1", bucket=db, token="")
    config["spool"].update(path=str(tmp_path / "spool.db"), flush_s=0.2, **spool)
    config["output"].update(line_protocol=str(tmp_path / "points.lp"), agent_interval_s=1.0)
    return config


def lp_points(path):
    """measurement -> set of (tags, timestamp) written to the line-protocol file."""
    by_measurement = {}
    for line in path.read_text().splitlines():
        head, _, rest = line.partition(" ")
        measurement, _, tags = head.partition(",")
        by_measurement.setdefault(measurement, set()).add((tags, int(rest.rsplit(" ", 1)[1])))
    return by_measurement


def assert_db_matches_file(influx, db, lp_path):
    written = lp_points(lp_path)
    for measurement, keys in written.items():
        [row] = influx.rows(f'SELECT count(*) FROM "{measurement}"', db) or [{}]
        counts = {v for k, v in row.items() if k.startswith("count_")}
        if measurement in ("vehicle", "agent"):
            rows = influx.rows(f'SELECT * FROM "{measurement}"', db)
            assert len(rows) == len(keys), measurement  # one row per (series, time): nothing lost
        else:
            assert max(counts) == len(keys), (measurement, counts, len(keys))


def test_live_drive_lands_in_influxdb(influx, influx_db, tmp_path):
    cycle = load_cycle("wltc-jp")
    # 50x: a car-second is then 20 ms of wall time, enough that a busy machine never starves a second of samples
    drive = live_drive(cycle, "map", agent_config=agent_config(influx, influx_db, tmp_path),
                       record=tmp_path / "drive.log")
    drive.outputs.close(drain_stall_s=30)
    assert drive.outputs.sender.points_sent == drive.outputs.spool_writer.points_committed
    assert_db_matches_file(influx, influx_db, tmp_path / "points.lp")
    [row] = influx.rows("SELECT count(speed_kmh) FROM vehicle", influx_db)
    seconds = int(cycle.duration_s)
    assert seconds - 2 <= row["count"] <= seconds + 2  # one vehicle point per second of the drive
    [trip] = drive.pipeline.stats()["trips"]
    [stored] = influx.rows("SELECT * FROM trip", influx_db)
    for key, value in trip.items():
        if isinstance(value, float):
            assert stored[key] == pytest.approx(value, rel=1e-12), key
    assert stored["fuel_source"] == "speed_density" and stored["vehicle"] == "kei"
    assert len(influx.rows("SELECT * FROM speed_domain", influx_db)) == 3
    assert len(influx.rows("SELECT * FROM speed_band", influx_db)) == 7
    agent = influx.rows("SELECT * FROM agent", influx_db)
    assert agent and agent[-1]["frames_total"] > 0 and "rss_mb" in agent[-1]


def test_replayed_log_lands_and_trip_equals_stats(influx, influx_db, tmp_path):
    log = tmp_path / "wltc-jp.log"
    write_log(log, "wltc-jp", pid_set="maf", broadcast=False)
    stats = json.loads(run_cli("stats", log, "--format", "json").stdout)
    result = run_cli("replay", log, "--influx-url", influx.url, "--influx-api", "v1", "--influx-bucket", influx_db,
                     "--out", tmp_path / "points.lp", "--config", spool_config(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "points sent to InfluxDB v1" in result.stderr and "still spooled" not in result.stderr
    assert_db_matches_file(influx, influx_db, tmp_path / "points.lp")
    [stored] = influx.rows("SELECT * FROM trip", influx_db)
    for key, value in stats["trips"][0].items():
        if isinstance(value, float):
            assert stored[key] == pytest.approx(value, rel=1e-12), key
    first = influx.rows("SELECT first(speed_kmh) FROM vehicle", influx_db)[0]
    assert first["time"] == 1775034000000  # original timestamps, not the time of the replay
    # the agent's health every 10 s of car time, each at its own time (a replayed block is ~90 s of driving)
    duration_s = stats["trips"][0]["duration_s"]
    agent_points = influx.rows("SELECT count(frames_total) FROM agent", influx_db)[0]["count"]
    assert duration_s / 10 - 2 <= agent_points <= duration_s / 10 + 2
    # a second replay of the same log overwrites: the same number of points, not twice as many
    count = influx.rows("SELECT count(speed_kmh) FROM vehicle", influx_db)[0]["count"]
    assert run_cli("replay", log, "--influx-url", influx.url, "--influx-api", "v1", "--influx-bucket", influx_db,
                   "--config", spool_config(tmp_path)).returncode == 0
    assert influx.rows("SELECT count(speed_kmh) FROM vehicle", influx_db)[0]["count"] == count


def spool_config(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(f'[spool]\npath = "{tmp_path / "replay-spool.db"}"\nflush_s = 0.2\n')
    return path


def test_outage_mid_drive_loses_nothing(influx, influx_db, tmp_path):
    cycle = load_cycle("wltc-jp")
    state = {"stopped": False, "restarted": False}

    def outage(car_time_s):
        if car_time_s > 300 and not state["stopped"]:
            influx.stop()
            state["stopped"] = True
        elif car_time_s > 900 and not state["restarted"]:
            influx.start()
            state["restarted"] = True

    drive = live_drive(cycle, "map", agent_config=agent_config(influx, influx_db, tmp_path),
                       during=outage)
    assert state == {"stopped": True, "restarted": True}
    assert drive.outputs.sender.failures > 0 or drive.outputs.sender.last_error  # the outage was felt
    drive.outputs.close(drain_stall_s=60)
    assert drive.outputs.sender.points_sent == drive.outputs.spool_writer.points_committed  # each batch once
    assert_db_matches_file(influx, influx_db, tmp_path / "points.lp")
    # restarting influxd takes a second or two of the 2 CPUs: at 100x that can starve the poller for a few
    # car-seconds, so the drive itself may have a short hole; what reached the file reached the database.
    [row] = influx.rows("SELECT count(speed_kmh) FROM vehicle", influx_db)
    assert row["count"] >= cycle.duration_s - 30
