"""Every OBD-II transport gives the same answers: a real K-line car (the 2008 Suzuki Jimny's recorded adapter
transcript, served by a fake adapter) read by `dtc` and `run --obd` as python-OBD reads it; ISO 9141-2,
ISO 14230-4 and SAE J1850 header formats decoding to the same speed and rpm as CAN; headerless lines never taken as frames;
29-bit CAN giving the same trip figures as 11-bit; and `dtc` against the third-party ELM327-emulator agreeing
with python-OBD on trouble codes and VIN."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import can
import pytest

from firmware_bridge import cli
from firmware_bridge.clock import RealClock
from firmware_bridge.decode.dbc import load_database
from firmware_bridge.decode.decoder import Decoder
from firmware_bridge.obd import pids
from firmware_bridge.obd.poller import ObdPoller, PollSettings
from firmware_bridge.records import block_of_messages
from firmware_bridge.sim import CarConfig, KeiCar, ObdResponder
from firmware_bridge.sim.cycles import Cycle, load_cycle
from firmware_bridge.sources.elm327 import crc_j1850, parse_frame

from conftest import real_log
from kline_adapter import JIMNY_NAME, Elm327Text, PtyAdapter, TranscriptEcu, load_transcript
from livedrive import live_drive

obd = pytest.importorskip("obd")  # python-OBD: what we agree with


@pytest.fixture
def jimny():
    adapter = PtyAdapter(Elm327Text("5", TranscriptEcu(real_log(JIMNY_NAME))))
    yield adapter
    adapter.close()


def python_obd(path: str):
    connection = obd.OBD(path, baudrate=38400, fast=False, timeout=2)
    assert connection.status() == obd.OBDStatus.CAR_CONNECTED
    return connection


def test_jimny_trouble_codes_as_python_obd_reads_them(jimny, capsys, caplog):
    connection = python_obd(jimny.path)
    theirs = [code for code, _ in connection.query(obd.commands.GET_DTC).value]
    connection.close()
    assert cli.main(["dtc", "-i", "elm327", "-c", jimny.path, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    found = json.loads(out)
    assert [c["code"] for c in found["stored"]] == theirs == ["P0115", "P2263", "P0045"]
    assert {c["ecu"] for c in found["stored"]} == {"18DAF17A"}  # KWP source address 7A
    assert found["dtc_count"] == 3 and found["mil_on"] is False  # PID 01 byte A = 03
    assert found["pending"] == [] and found["permanent"] == []  # 47 00..; 7F 0A 11 (service not supported)
    assert "automatic protocol search found ISO 14230-4 KWP (fast init" in caplog.text and "transmits" in err


def test_jimny_run_obd_writes_its_rpm_and_coolant(jimny, tmp_path):
    recorded = load_transcript(real_log(JIMNY_NAME))
    rpms = {int(a[0][10:14], 16) / 4 for a in recorded["010C"]}  # 84 F1 7A 41 0C A B cs
    coolants = {int(a[0][10:12], 16) - 40 for a in recorded["0105"]}
    out = tmp_path / "jimny.lp"
    proc = subprocess.Popen([sys.executable, "-m", "firmware_bridge", "run", "-i", "elm327", "-c", jimny.path,
                             "--obd", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "coolant_c=" not in (out.read_text() if out.exists() else ""):
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = [line for line in out.read_text().splitlines() if line.startswith("vehicle,")]
    fields = [dict(f.split("=") for f in line.split(" ")[1].split(",")) for line in lines]
    seen_rpm = {float(f["engine_rpm"]) for f in fields if "engine_rpm" in f}
    seen_coolant = {float(f["coolant_c"]) for f in fields if "coolant_c" in f}
    assert seen_rpm and seen_rpm <= rpms
    assert seen_coolant and seen_coolant <= coolants
    assert "ISO 14230-4 KWP" in err


# -- ISO 9141-2 and ISO 14230-4 header formats against CAN ---------------------------------------------------


def kline_answer(payload: bytes, protocol: str, ecu: int = 0x10) -> str:
    """The simulator's answer as a K-line or J1850 ECU sends it: ISO 9141-2 and J1850 VPW `48 6B <ecu>`, KWP
    `8L F1 <ecu>`, J1850 PWM `41 6B <ecu>`; then the data and the checksum (J1850: its CRC-8)."""
    header = {"1": (0x41, 0x6B, ecu), "2": (0x48, 0x6B, ecu), "3": (0x48, 0x6B, ecu)}.get(
        protocol, (0x80 | len(payload), 0xF1, ecu))
    body = bytes(header) + payload
    check = crc_j1850(body) if protocol in "12" else sum(body) & 0xFF
    return (body + bytes((check,))).hex().upper()


@pytest.mark.parametrize("protocol", ["3", "4", "5", "2"])  # ISO 9141-2, KWP 5-baud and fast init, J1850 VPW
def test_kline_header_formats_give_the_can_speed_and_rpm(protocol):
    cycle = load_cycle("wltc-jp")
    can_ecu = ObdResponder(KeiCar(CarConfig(), cycle), "map")
    kline_ecu = ObdResponder(KeiCar(CarConfig(), cycle), "map")
    now = {"t": 0.0}

    def answer(command: str):
        payload = kline_ecu.answer(bytes.fromhex(command), kline_ecu.car.advance_to(now["t"]))
        return [kline_answer(payload, protocol)] if payload else None

    adapter = PtyAdapter(Elm327Text(protocol, answer))
    bus = can.Bus(interface="elm327", channel=adapter.path)
    poller = ObdPoller(bus, PollSettings(), RealClock())
    notifier = can.Notifier(bus, [poller])
    decoder = Decoder(load_database(), wanted=None)
    try:
        assert poller.discover() >= {0x0C, 0x0D}  # ISO-TP single frames from 18DAF110, so the poller counts them
        assert bus.active_protocol == protocol and poller.pids_per_request == 1
        assert poller.max_requests_per_s == (5.0 if protocol in "345" else 10.0)
        series = {"kline": [], "can": []}
        for t in range(60, 600, 20):
            now["t"] = float(t)
            for pid in (0x0D, 0x0C):
                kline = poller.ask(pid)
                assert kline is not None
                [on_can] = can_ecu.respond_frames(pids.request(pid), float(t))
                [kline_frame, can_frame] = decoder.decode(block_of_messages([kline, on_can])).frames()
                series["kline"].append(kline_frame.signals)
                series["can"].append(can_frame.signals)
    finally:
        notifier.stop()
        bus.shutdown()
        adapter.close()
    assert series["kline"] == series["can"]
    assert any(s.get("vehicle_speed_kmh", 0) > 30 for s in series["can"])  # a real drive, not idling


@pytest.mark.parametrize("line, protocol", [
    ("41 0C 1A F8", "6"), ("410C1AF8", "6"), ("0250C0FFFFFFFFFF", "6"), ("0250C0FFFFFFFFFF", None),
    ("41 0C 000", None), ("7E8 41 0C 1A F8", "6"),  # headers on, ISO-TP byte missing: not a frame either
    ("7E8 04 41 0C 1A F8", "7"),  # an 11-bit line while the adapter talks 29-bit
    ("410C1AF8", "3"), ("48 6B 10 41 0C 1A F8 00", "3"),  # K-line: headerless; a wrong checksum
])
def test_headerless_lines_are_never_frames(line, protocol):
    assert parse_frame(line, pad=True, protocol=protocol) is None


def test_j1850_and_iso_9141_frames():
    body = bytes.fromhex("486B10410D32")
    iso = parse_frame((body + bytes((sum(body) & 0xFF,))).hex(), pad=True, protocol="3")
    vpw = parse_frame((body + bytes((crc_j1850(body),))).hex(), pad=True, protocol="2")
    for frame in (iso, vpw):
        assert (frame.arbitration_id, frame.is_extended_id, frame.data.hex()) == (0x18DAF110, True, "03410d3200000000")
    assert crc_j1850(bytes(4)) == 0x59 and crc_j1850(bytes.fromhex("F20183")) == 0x37  # the J1850 check values


# -- 29-bit CAN end to end ----------------------------------------------------------------------------------


def test_a_drive_over_29_bit_can_gives_the_same_trip_as_11_bit(tmp_path):
    cycle = Cycle("town", tuple([i * 1.5 for i in range(30)] + [45.0] * 60 + [45.0 - i * 1.5 for i in range(31)]
                                + [0.0] * 10 + [i * 1.0 for i in range(30)] + [30.0 - i for i in range(31)]))
    trips = {}
    for name, request_id, ecu_tx_id in (("11-bit", 0x7DF, 0x7E8), ("29-bit", 0x18DB33F1, 0x18DAF110)):
        drive = live_drive(cycle, "maf", record=tmp_path / f"{name}.log",
                           settings=PollSettings(request_id=request_id, response_timeout_s=0.5),
                           car_options={"ecu_tx_id": ecu_tx_id})
        [trips[name]] = drive.pipeline.stats()["trips"]
        frames = list(can.LogReader(drive.log_path))
        assert {m.is_extended_id for m in frames} == {ecu_tx_id > 0x7FF}
        replay = json.loads(subprocess.run([sys.executable, "-m", "firmware_bridge", "stats", drive.log_path,
                                            "--format", "json"], capture_output=True, text=True,
                                           timeout=300).stdout)
        [replayed] = replay["trips"]
        assert replayed["distance_km"] == pytest.approx(trips[name]["distance_km"], rel=0.001)
        assert trips[name]["distance_km"] == pytest.approx(drive.truth.distance_km, rel=0.02)
    for key in ("distance_km", "fuel_used_l", "moving_time_s", "max_speed_kmh"):
        assert trips["29-bit"][key] == pytest.approx(trips["11-bit"][key], rel=0.03), key
    assert trips["29-bit"]["fuel_source"] == trips["11-bit"]["fuel_source"] == "maf"


# -- the third-party ELM327-emulator ----------------------------------------------------------------------


def test_dtc_agrees_with_python_obd_on_elm327_emulator(tmp_path, capsys):
    from elm327_harness import Emulator

    emulator = Emulator(tmp_path).start()  # its "car" scenario; it serves a different VIN on each request
    try:
        connection = python_obd(str(emulator.link))
        codes = [code for code, _ in connection.query(obd.commands.GET_DTC).value]
        vin = connection.query(obd.commands.VIN)
        connection.close()
        emulator.stop()
        emulator.start()  # the same scenario afresh for us
        assert cli.main(["dtc", "-i", "elm327", "-c", str(emulator.link), "--format", "json"]) == 0
    finally:
        emulator.stop()
    found = json.loads(capsys.readouterr().out)
    assert [c["code"] for c in found["stored"]] == codes
    assert found["mil_on"] is False and found["dtc_count"] == 0
    # python-OBD's own reassembled answer carries the same 17 characters; its decoder then strips the
    # characters 0, 1, 2, x and \ from both ends as well as NULs (WP0ZZZ99ZTS390000 becomes WP0ZZZ99ZTS39)
    assert found["vin"] == bytes(vin.messages[0].data[3:]).strip(b"\0").decode() == "WP0ZZZ99ZTS390000"
    assert bytes(vin.value).decode() == found["vin"].strip("012x\\")
