"""Every number is range-checked, every bad input is one line and exit 2, JSON is always JSON, and the
conventions users already have (python-can's configuration, InfluxDB's environment names, paths relative to
the configuration file) are followed."""

import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys

import can
import pytest

from firmware_bridge.config import BOUNDS, SCHEMA, apply_influx_environment, bus_settings, defaults, load_config
from firmware_bridge.errors import InputError

from conftest import T0, run_cli, write_log


def one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("firmware-bridge: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


CONFIG_KEYS = [key for key in BOUNDS if not key.startswith("--")]


def test_every_bound_names_a_real_numeric_key():
    for key in CONFIG_KEYS:
        section, name = key.split(".")
        assert float in SCHEMA[section][name][0] or int in SCHEMA[section][name][0], key
    numeric = [f"{s}.{k}" for s, keys in SCHEMA.items() for k, (types, _) in keys.items()
               if int in types and str not in types]
    assert set(numeric) <= set(BOUNDS)  # no number escapes a range
    for key in CONFIG_KEYS:  # every default is inside its own range
        section, name = key.split(".")
        default = SCHEMA[section][name][1]
        assert default is None or default in BOUNDS[key], key


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_out_of_range_values_are_refused_naming_the_key(tmp_path, key):
    section, name = key.split(".")
    bound = BOUNDS[key]
    integer = SCHEMA[section][name][0] == (int,)
    bad = [bound.low - 1, bound.high + 1] if integer else [bound.low - 1, bound.high * 2, "nan", "inf", "-inf"]
    if bound.low_open:
        bad.append(int(bound.low) if integer else float(bound.low))
    for value in bad:
        path = tmp_path / "agent.toml"
        path.write_text(f"[{section}]\n{name} = {value}\n")
        with pytest.raises(InputError, match=rf"agent.toml: {key}: .* is outside"):
            load_config(path)


def test_the_reported_failures_exit_2_naming_the_key(tmp_path):
    log = tmp_path / "d.log"
    write_log(log, [can.Message(timestamp=T0, arbitration_id=0x7E8, data=[3, 0x41, 0x0D, 30, 0, 0, 0, 0])])
    for section, key, value in [("output", "trip_update_s", 0), ("output", "agent_interval_s", 0),
                                ("output", "interval_s", 0), ("obd", "max_requests_per_s", 0),
                                ("obd", "max_requests_per_s", 1000), ("obd", "max_requests_per_s", "inf"),
                                ("obd", "max_requests_per_s", "nan"), ("obd", "max_requests_per_s", -5),
                                ("obd", "request_id", -1), ("spool", "max_mb", -1), ("spool", "flush_s", "nan"),
                                ("spool", "queue_points", 0), ("analytics", "min_trip_s", -1)]:
        config = tmp_path / "agent.toml"
        config.write_text(f"[{section}]\n{key} = {value}\n")
        one_line_error(run_cli("stats", log, "--config", config), f"{section}.{key}")


@pytest.mark.parametrize("value", ["nan", "1e-9", "0", "-1", "inf"])
def test_demo_speedup_is_range_checked(value):
    one_line_error(run_cli("demo", "--speedup", value), "--speedup", "outside [0.1, 1000]")


def test_command_line_bitrate_and_fillup_numbers(tmp_path):
    one_line_error(run_cli("run", "-i", "virtual", "-b", "0"), "bus.bitrate")
    one_line_error(run_cli("fillup", "--litres", "nan", "--odometer", "100"), "--litres")
    one_line_error(run_cli("fillup", "--litres", "20", "--odometer", "-5"), "--odometer")


@pytest.mark.parametrize("url", ["192.168.1.10", "ftp://x", "http://", "http://host:notaport", "localhost:8086"])
def test_influx_urls_must_be_http_with_a_host(tmp_path, url):
    log = tmp_path / "d.log"
    write_log(log, [can.Message(timestamp=T0, arbitration_id=0x7E8, data=[3, 0x41, 0x0D, 30, 0, 0, 0, 0])])
    result = run_cli("replay", log, "--influx-url", url, "--influx-api", "v1", "--influx-bucket", "x")
    one_line_error(result, "influx.url")


def test_a_url_with_credentials_is_refused_without_printing_them(tmp_path):
    log = tmp_path / "d.log"
    write_log(log, [can.Message(timestamp=T0, arbitration_id=0x7E8, data=[3, 0x41, 0x0D, 30, 0, 0, 0, 0])])
    result = run_cli("replay", log, "--influx-url", "http://kei:s3cret@127.0.0.1:1", "--influx-api", "v1")
    one_line_error(result, "influx.url", "credentials")
    assert "s3cret" not in result.stderr and "s3cret" not in result.stdout


def test_bad_configuration_files_are_one_line(tmp_path):
    log = tmp_path / "d.log"
    write_log(log, [can.Message(timestamp=T0, arbitration_id=0x7E8, data=[3, 0x41, 0x0D, 30, 0, 0, 0, 0])])
    one_line_error(run_cli("stats", log, "--config", tmp_path), str(tmp_path), "directory")
    (tmp_path / "latin1.toml").write_bytes("[vehicle]\nid = \"kei-\xe9\"\n".encode("latin-1"))
    one_line_error(run_cli("stats", log, "--config", tmp_path / "latin1.toml"), "latin1.toml", "UTF-8")
    (tmp_path / "dbc.toml").write_text("[vehicle]\ndbc = [1, 2]\n")
    one_line_error(run_cli("stats", log, "--config", tmp_path / "dbc.toml"), "vehicle.dbc")
    if os.geteuid() != 0:  # root reads any file
        (tmp_path / "secret.toml").write_text("")
        (tmp_path / "secret.toml").chmod(0)
        one_line_error(run_cli("stats", log, "--config", tmp_path / "secret.toml"), "secret.toml")


def test_an_unwritable_output_path_is_one_line():
    one_line_error(run_cli("simulate", "--out", "/proc/x.log"), "/proc/x.log")


def test_python_can_reader_warnings_become_counted_problems(tmp_path):
    empty = tmp_path / "empty.trc"
    empty.write_text("")
    result = run_cli("stats", empty, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "WARNING can." not in result.stderr  # python-can's own logger does not leak
    assert f"warning: {empty}:" in result.stderr
    assert json.loads(result.stdout)["frames"]["malformed"] >= 1


def strict_json(text):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_decode_prints_null_for_nan_and_infinity(tmp_path):
    dbc = tmp_path / "float.dbc"
    dbc.write_text('VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: ECU\n\n'
                   'BO_ 768 FLOATS: 8 ECU\n SG_ value : 0|32@1- (1,0) [0|0] "" Vector__XXX\n'
                   ' SG_ other : 32|32@1- (1,0) [0|0] "" Vector__XXX\n\n'
                   'SIG_VALTYPE_ 768 value : 1;\nSIG_VALTYPE_ 768 other : 1;\n')
    frames = [can.Message(timestamp=T0 + i, arbitration_id=768, is_extended_id=False,
                          data=struct.pack("<ff", value, 1.5)) for i, value in
              enumerate([math.nan, math.inf, -math.inf, 2.0])]
    log = tmp_path / "floats.log"
    write_log(log, frames)
    result = run_cli("decode", log, "--dbc", dbc)
    assert result.returncode == 0, result.stderr
    values = [strict_json(line)["signals"]["value"] for line in result.stdout.splitlines()]
    assert values == [None, None, None, 2.0]


def test_relative_paths_in_a_config_file_resolve_against_the_file(tmp_path):
    car = tmp_path / "car"
    car.mkdir()
    (car / "extra.dbc").write_text('VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: ECU\n\n'
                                   'BO_ 801 EXTRA: 8 ECU\n SG_ x : 0|8@1+ (1,0) [0|255] "" Vector__XXX\n')
    (car / "token").write_text("abc\n")
    (car / "agent.toml").write_text('[vehicle]\ndbc = ["extra.dbc"]\n[influx]\ntoken_file = "token"\n'
                                    '[spool]\npath = "state/spool.db"\n')
    config = load_config(car / "agent.toml")
    assert config["vehicle"]["dbc"] == [str(car / "extra.dbc")]
    assert config["spool"]["path"] == str(car / "state" / "spool.db")
    apply_influx_environment(config, {})
    assert config["influx"]["token"] == "abc"
    log = tmp_path / "x.log"
    write_log(log, [can.Message(timestamp=T0, arbitration_id=801, is_extended_id=False, data=[7] * 8)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "firmware_bridge", "stats", str(log), "--config",
                             "../car/agent.toml", "--format", "json"], cwd=elsewhere, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"]["decoded"] == 1  # the DBC beside the file was found


def test_influxdb_environment_names():
    def influx(environ):
        config = defaults()
        apply_influx_environment(config, environ)
        return {k: config["influx"][k] for k in ("url", "org", "bucket", "token")}

    assert influx({"INFLUXDB_V2_URL": "http://a:8086", "INFLUXDB_V2_ORG": "o", "INFLUXDB_V2_TOKEN": "t"}) == {
        "url": "http://a:8086", "org": "o", "bucket": "firmware_bridge", "token": "t"}
    assert influx({"INFLUX_HOST": "http://b:8086", "INFLUX_DATABASE": "kei", "INFLUX_TOKEN": "t2"}) == {
        "url": "http://b:8086", "org": "", "bucket": "kei", "token": "t2"}
    # ours win over InfluxDB's, which win over influxdb-client's
    mixed = influx({"INFLUXDB_V2_URL": "http://a:1", "INFLUX_HOST": "http://b:2", "INFLUX_URL": "http://c:3",
                    "INFLUX_DATABASE": "db", "INFLUX_BUCKET": "bucket"})
    assert mixed["url"] == "http://c:3" and mixed["bucket"] == "bucket"
    assert influx({"INFLUXDB_V2_URL": "http://a:1", "INFLUX_HOST": "http://b:2"})["url"] == "http://b:2"


def test_python_can_configuration_when_ours_sets_no_interface(tmp_path, monkeypatch):
    for variable in ("CAN_INTERFACE", "CAN_CHANNEL", "CAN_BITRATE", "CAN_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert bus_settings(defaults())["interface"] == "socketcan"  # nothing anywhere: socketcan on can0
    (tmp_path / ".canrc").write_text("[default]\ninterface = virtual\nchannel = kei\nbitrate = 250000\n")
    assert bus_settings(defaults()) == {"interface": "virtual", "channel": "kei", "bitrate": 250000}
    monkeypatch.setenv("CAN_INTERFACE", "virtual")
    monkeypatch.setenv("CAN_CHANNEL", "from-env")
    assert bus_settings(defaults())["channel"] == "from-env"  # python-can's own order: environment first
    config = defaults()
    config["bus"].update(interface="socketcan", channel="can1")
    assert bus_settings(config)["interface"] == "socketcan"  # our file wins
    assert bus_settings(config, interface="virtual", channel="x") == {"interface": "virtual", "channel": "x",
                                                                     "bitrate": None}
    (tmp_path / ".canrc").write_text("[default]\ninterface = nosuchbus\n")
    monkeypatch.delenv("CAN_INTERFACE")
    with pytest.raises(InputError, match="python-can configuration"):
        bus_settings(defaults())


def test_run_opens_the_bus_named_in_canrc(tmp_path):
    (tmp_path / ".canrc").write_text("[default]\ninterface = virtual\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAN_", "INFLUX_"))}
    # READY=1 on $NOTIFY_SOCKET comes after the SIGINT handler is in place: signalled then, never before
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(120)
    env.update(HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"), NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    proc = subprocess.Popen([sys.executable, "-m", "firmware_bridge", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        assert first.startswith("firmware-bridge: reading virtual"), first
        assert notify.recv(4096).decode().startswith("READY=1")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
