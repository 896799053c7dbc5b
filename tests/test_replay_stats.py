"""stats over real log files: OBD-only logs, trip splitting, every log format, bad input."""

import json

import pytest

from conftest import T0, obd_drive, obd_response, run_cli, write_log

TRIP_KEYS = {"start", "end", "duration_s", "moving_time_s", "idle_time_s", "distance_km", "fuel_used_l",
             "fuel_source", "economy_km_per_l", "economy_l_per_100km", "economy_mpg_us", "idle_fuel_l", "co2_kg",
             "mean_speed_kmh", "max_speed_kmh", "stops", "speed_bands", "speed_domains", "rpa_m_s2",
             "va_pos_95_m2_s3", "harsh_accel_events", "harsh_brake_events", "energy_kwh", "economy_wh_per_km"}


def stats_json(*args):
    result = run_cli("stats", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_obd_only_log_gives_trip_figures(tmp_path, trapezoid_drive):
    log = tmp_path / "obd.log"
    write_log(log, obd_drive(trapezoid_drive))
    stats = stats_json(log)
    assert stats["frames"] == {"total": len(trapezoid_drive) * 8, "decoded": len(trapezoid_drive) * 8,
                               "unknown": 0, "malformed": 0}
    [trip] = stats["trips"]
    assert TRIP_KEYS <= set(trip)
    assert trip["distance_km"] == pytest.approx(3.0, rel=0.005)
    assert trip["fuel_source"] == "speed_density"
    assert trip["max_speed_kmh"] == 60.0
    assert trip["stops"] == 1.0
    assert trip["start"][:19] == "2026-04-01T09:00:00"
    assert trip["duration_s"] == pytest.approx(330.0, abs=1.0)
    assert trip["idle_time_s"] == pytest.approx(32.0, abs=2.0)  # 30 s at the end, plus speeds rounding to 0
    assert trip["economy_km_per_l"] == pytest.approx(trip["distance_km"] / trip["fuel_used_l"])
    assert trip["co2_kg"] == pytest.approx(trip["fuel_used_l"] * 2.32)
    assert sum(b["distance_km"] for b in trip["speed_bands"].values()) == pytest.approx(trip["distance_km"])
    assert sum(d["fuel_l"] for d in trip["speed_domains"].values()) == pytest.approx(trip["fuel_used_l"])
    assert trip["speed_domains"]["motorway"]["distance_km"] == 0.0
    assert all(isinstance(v, float) for k, v in trip.items() if k not in ("start", "end", "fuel_source")
               and not isinstance(v, dict) and v is not None)
    assert stats["total"]["distance_km"] == pytest.approx(trip["distance_km"])


def test_fifteen_minutes_of_silence_splits_trips(tmp_path, trapezoid_drive):
    first = obd_drive(trapezoid_drive)
    second = obd_drive(trapezoid_drive, t0=first[-1].timestamp + 15 * 60)
    write_log(tmp_path / "two.log", first + second)
    stats = stats_json(tmp_path / "two.log")
    assert len(stats["trips"]) == 2
    assert stats["total"]["distance_km"] == pytest.approx(sum(t["distance_km"] for t in stats["trips"]))
    assert stats["total"]["duration_s"] == pytest.approx(sum(t["duration_s"] for t in stats["trips"]))


def test_responses_from_every_ecu_decode(tmp_path, trapezoid_drive):
    frames = [obd_response(0x0D, [40], T0 + i, ecu_id=0x7E8 + i % 8) for i in range(16)]
    write_log(tmp_path / "ecus.log", frames)
    assert stats_json(tmp_path / "ecus.log")["frames"]["decoded"] == 16


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".trc", ".csv", ".log.gz", ".asc.gz"])
def test_every_log_format_gives_the_same_stats(tmp_path, trapezoid_drive, suffix):
    frames = obd_drive(trapezoid_drive)
    write_log(tmp_path / "drive.log", frames)
    write_log(tmp_path / f"drive{suffix}", frames)
    reference = stats_json(tmp_path / "drive.log")
    other = stats_json(tmp_path / f"drive{suffix}")
    assert other["frames"] == reference["frames"]
    for key in ("distance_km", "fuel_used_l", "duration_s", "idle_time_s", "max_speed_kmh", "rpa_m_s2"):
        assert other["total"][key] == pytest.approx(reference["total"][key], rel=1e-3), key
    assert other["total"]["start"][:19] == reference["total"]["start"][:19]


def test_corrupt_candump_lines_are_counted_not_fatal(tmp_path, trapezoid_drive):
    log = tmp_path / "corrupt.log"
    write_log(log, obd_drive(trapezoid_drive))
    lines = log.read_text().splitlines()
    lines.insert(100, "(1775034050.000000) vcan0 7E8#ZZ")
    lines.insert(200, "this is not candump")
    log.write_text("\n".join(lines) + "\n")
    result = run_cli("stats", log, "--format", "json")
    assert result.returncode == 0
    stats = json.loads(result.stdout)
    assert stats["frames"]["malformed"] == 2
    assert f"{log}:101" in result.stderr and f"{log}:201" in result.stderr
    assert stats["trips"][0]["distance_km"] == pytest.approx(3.0, rel=0.005)


def test_frame_shorter_than_its_message_is_counted(tmp_path):
    frames = [obd_response(0x0D, [40], T0 + i) for i in range(3)]
    frames[1].data = frames[1].data[:4]
    frames[1].dlc = 4
    write_log(tmp_path / "short.log", frames)
    assert stats_json(tmp_path / "short.log")["frames"] == {"total": 3, "decoded": 2, "unknown": 0, "malformed": 1}


def test_unknown_frames_are_counted(tmp_path):
    import can
    frames = [can.Message(timestamp=T0 + i, arbitration_id=0x123, data=[1, 2]) for i in range(5)]
    frames.append(obd_response(0x01, [0, 0, 0, 0], T0 + 6))  # a PID our DBC does not describe
    write_log(tmp_path / "unknown.log", frames)
    assert stats_json(tmp_path / "unknown.log")["frames"]["unknown"] == 6


@pytest.mark.parametrize("case", ["missing", "format", "dbc", "vehicle", "config"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, trapezoid_drive, case):
    log = tmp_path / "ok.log"
    write_log(log, obd_drive(trapezoid_drive[:10]))
    bad_dbc = tmp_path / "bad.dbc"
    bad_dbc.write_text('VERSION ""\nBO_ 100 Broken: 8 ECU\n SG_ speed : 0|8@1+ (1,0) [0|255] "" ECU\nnonsense here\n')
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[obd]\nmax_request_per_s = 5\n")
    args = {"missing": [tmp_path / "nope.log"], "format": [tmp_path / "x.txt"],
            "dbc": [log, "--dbc", bad_dbc], "vehicle": [log, "--vehicle", "no-such-car"],
            "config": [log, "--config", bad_config]}[case]
    if case == "format":
        (tmp_path / "x.txt").write_text("hello")
    result = run_cli("stats", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert {"missing": "nope.log", "format": "x.txt", "dbc": "bad.dbc", "vehicle": "generic-kei",
            "config": "obd.max_request_per_s"}[case] in lines[0]


def test_decode_json_lines(tmp_path):
    write_log(tmp_path / "d.log", [obd_response(0x0C, [0x1F, 0x40], T0), obd_response(0x0D, [88], T0 + 1)])
    result = run_cli("decode", tmp_path / "d.log")
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0] == {"t": T0, "id": 0x7E8, "message": "OBD2_RESPONSE",
                       "signals": {"length": 4, "service": 0x41, "pid": 0x0C, "engine_speed_rpm": 2000.0}}
    assert rows[1]["signals"]["vehicle_speed_kmh"] == 88
