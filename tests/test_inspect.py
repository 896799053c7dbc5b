"""`inspect`: what is on a bus, which databases fit it, which signals look like speed and rpm, a signal map."""

from __future__ import annotations

import json
import pickle

import pytest

from firmware_bridge import survey
from firmware_bridge.commands.inspect import survey_logs, table
from firmware_bridge.survey import SignalFigures, score_signal

from conftest import T0, obd_drive, real_log, run_cli, write_log

HONDA_DBC = "honda_civic_touring_2016_can_generated.dbc"
CIVIC = "civic8th_vsslog.log"


def test_civic_with_the_honda_dbc_ranks_real_signals_first():
    report = survey_logs([str(real_log(CIVIC))], [str(real_log(HONDA_DBC))])
    speed, rpm = report["candidates"]["speed_kmh"], report["candidates"]["engine_rpm"]
    assert speed[0]["source"] in {"ENGINE_DATA.XMISSION_SPEED", "ENGINE_DATA.XMISSION_SPEED2"}
    assert speed[0]["max"] == pytest.approx(125.9)
    assert not any(c["source"].startswith("WHEEL_SPEEDS.") for c in speed[:2])  # look-alikes rank lower
    assert rpm[0]["source"] == "POWERTRAIN_DATA.ENGINE_RPM"
    names = [fit["name"] for fit in report["databases"]]
    above = names[:next(i for i, name in enumerate(names) if name.endswith(HONDA_DBC))]
    assert all("honda" in name or "acura" in name for name in above), above  # only Honda's own files fit better


def test_without_a_dbc_a_honda_database_fits_best():
    report = survey_logs([str(real_log(CIVIC))], [])
    top3 = [fit["name"] for fit in report["databases"][:3]]
    assert any("honda" in name for name in top3), top3
    assert any(name.startswith("opendbc:") and "honda" in name for name in
               [fit["name"] for fit in report["databases"][:5]])  # opendbc's generated Honda files fit too
    ids = {row["id"]: row for row in report["ids"]}
    assert ids[0x158]["count"] == 3187 and ids[0x158]["dlc"] == 8 and ids[0x158]["message"] == "ENGINE_DATA"
    assert ids[0x158]["rate_hz"] == pytest.approx(100, rel=0.02)


def test_the_printed_signal_map_gives_the_same_distance(tmp_path):
    log, dbc = real_log(CIVIC), real_log(HONDA_DBC)
    result = run_cli("inspect", log, "--dbc", dbc, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"frames", "ids", "databases", "candidates", "signal_map"}
    assert set(report["ids"][0]) == {"id", "extended", "count", "rate_hz", "dlc", "message"}
    assert set(report["databases"][0]) == {"name", "ids_matched", "ids_seen", "coverage"}
    assert set(report["candidates"]["speed_kmh"][0]) == {"source", "score", "min", "max"}
    (tmp_path / "map.toml").write_text(report["signal_map"])
    (tmp_path / "short.toml").write_text("[analytics]\nmin_trip_s = 10\n")
    common = ["--config", tmp_path / "short.toml", "--format", "json"]
    mapped = json.loads(run_cli("stats", log, "--dbc", dbc, "--signal-map", tmp_path / "map.toml", *common).stdout)
    folder = json.loads(run_cli("stats", log, "--vehicle", "honda-civic", *common).stdout)
    assert mapped["trips"][0]["distance_km"] == pytest.approx(folder["trips"][0]["distance_km"], rel=1e-9)
    shown = table(survey_logs([str(log)], [str(dbc)]))
    assert "POWERTRAIN_DATA.ENGINE_RPM" in shown and "0x158" in shown


def test_an_obd_only_log_is_read_through_the_obd_database(tmp_path):
    write_log(tmp_path / "obd.log", obd_drive([0, 10, 30, 50, 30, 0], t0=T0))
    report = survey_logs([str(tmp_path / "obd.log")], [])
    assert report["candidates"]["speed_kmh"][0]["source"] == "OBD2_RESPONSE.vehicle_speed_kmh"
    assert report["candidates"]["engine_rpm"][0]["source"] == "OBD2_RESPONSE.engine_speed_rpm"
    assert report["frames"]["total"] == 48


def test_counters_constants_and_wrong_units_do_not_win():
    moving = SignalFigures("km/h")
    for v in (0, 10, 20):
        moving.add(v)
    constant = SignalFigures("km/h")
    for _ in range(3):
        constant.add(0)
    counter = SignalFigures("")
    for v in (0, 1, 2, 3):
        counter.add(v)
    metres = SignalFigures("m")
    for v in (0, 10, 20):
        metres.add(v)
    assert score_signal("speed_kmh", "ENGINE_DATA", "XMISSION_SPEED", moving) == 1.0
    assert score_signal("speed_kmh", "ENGINE_DATA", "XMISSION_SPEED", constant) < 0.6
    assert score_signal("speed_kmh", "ENGINE_DATA", "SPEED_COUNTER", counter) == 0.0
    assert score_signal("speed_kmh", "WHEEL_SPEEDS", "WHEEL_SPEED_FL", moving) < 1.0
    assert score_signal("odometer_km", "ENGINE_DATA", "ODOMETER", metres) < 0.6


def test_a_typo_in_a_signal_map_is_an_error(tmp_path):
    write_log(tmp_path / "obd.log", obd_drive([0, 10, 0]))
    (tmp_path / "map.toml").write_text('speed_kmh = ["OBD2_RESPONSE.vehicle_sped_kmh"]\n')
    for command in ("stats", "replay", "inspect", "decode"):
        result = run_cli(command, tmp_path / "obd.log", "--signal-map", tmp_path / "map.toml")
        assert result.returncode == 2, command
        [line] = result.stderr.strip().splitlines()
        assert "map.toml" in line and "vehicle_sped_kmh" in line, command


def test_opendbc_databases_are_kept_on_disk_and_a_bad_cache_file_is_parsed_anew(tmp_path, monkeypatch):
    parsed = survey.opendbc_databases()  # this session's cache, or parsed now
    assert len(parsed) > 50
    parses = []

    def counted():  # the parse stands in for itself: what it returned, counted
        parses.append(1)
        return parsed

    monkeypatch.setattr(survey, "_parse_opendbc", counted)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "firmware-bridge"
    folder.mkdir()
    (folder / "opendbc-0123456789abcdef.pickle").write_bytes(b"an older key's file")
    path = folder / f"opendbc-{survey._opendbc_cache_key()}.pickle"
    for corrupt in (b"", b"\x80\x05not a pickle", pickle.dumps({"not": "databases"})):
        path.write_bytes(corrupt)
        survey.opendbc_databases.cache_clear()
        assert survey.opendbc_databases() is parsed
    assert len(parses) == 3
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # written whole, the older key's removed
    survey.opendbc_databases.cache_clear()
    from_disk = survey.opendbc_databases()
    assert len(parses) == 3  # read back, not parsed
    assert [name for name, _ in from_disk] == [name for name, _ in parsed]
    name, db = from_disk[0]
    assert [m.frame_id for m in db.messages] == [m.frame_id for m in dict(parsed)[name].messages]
    assert db.messages[0].decode(b"\0" * db.messages[0].length) == dict(parsed)[name].messages[0].decode(
        b"\0" * db.messages[0].length)
    # another opendbc (or cantools) is another key: the file of the one before is never read for it
    key = survey._opendbc_cache_key()
    real_version = survey.importlib.metadata.version
    monkeypatch.setattr(survey.importlib.metadata, "version", lambda name: "0.0.0" if name == "opendbc" else
                        real_version(name))
    assert survey._opendbc_cache_key() != key
    monkeypatch.setattr(survey.cantools, "__version__", "0.0.0")
    monkeypatch.setattr(survey.importlib.metadata, "version", real_version)
    assert survey._opendbc_cache_key() != key
    survey.opendbc_databases.cache_clear()
