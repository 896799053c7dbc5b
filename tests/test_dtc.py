"""`firmware-bridge dtc` against the simulated ECU on a virtual bus (11-bit and 29-bit), the decoding of
trouble codes, VIN and readiness in their CAN and K-line forms, `--clear` only with `--yes`, and the daemon's
diagnostics events."""

from __future__ import annotations

import json
import threading

import can
import pytest

from firmware_bridge import cli
from firmware_bridge.clock import ScaledClock
from firmware_bridge.obd.codes import describe
from firmware_bridge.obd.diagnostics import (
    DiagnosticsWatch, codes_in, dtc_code, info_bytes, read_diagnostics, readiness)
from firmware_bridge.obd.poller import ObdPoller, PollSettings
from firmware_bridge.sim import CarConfig, SimulatedCar
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.sim.obd import EcuDiagnostics, dtc_bytes

_channels = iter(range(10_000))
IDLE = Cycle("idle", (0.0,) * 600)


def test_codes_in_both_forms():
    assert dtc_code(bytes.fromhex("0115")) == "P0115"
    assert [dtc_code(dtc_bytes(c)) for c in ("P0115", "C0300", "B1234", "U0100", "P2263")] == [
        "P0115", "C0300", "B1234", "U0100", "P2263"]
    assert codes_in(bytes.fromhex("4303011522630045")) == ["P0115", "P2263", "P0045"]  # CAN
    assert codes_in(bytes.fromhex("43011522630045")) == ["P0115", "P2263", "P0045"]  # K-line: no count byte
    assert codes_in(bytes.fromhex("4700000000000000")) == codes_in(bytes.fromhex("4300")) == []


def test_vehicle_info_both_forms():
    vin = b"JS3TD0D0000100001"
    assert info_bytes([b"\x49\x02\x01" + vin]) == vin  # one ISO-TP message
    legacy = b"\x00\x00\x00" + vin
    messages = [bytes((0x49, 0x02, n + 1)) + legacy[4 * n:4 * n + 4] for n in range(5)]
    assert info_bytes(messages[::-1]).lstrip(b"\x00") == vin  # numbered K-line messages, in any order


def test_readiness_spark_and_compression():
    assert readiness(0x07, 0x65, 0x04) == {"misfire": "complete", "fuel_system": "complete", "components": "complete",
                                           "catalyst": "complete", "evaporative_system": "incomplete",
                                           "oxygen_sensor": "complete", "oxygen_sensor_heater": "complete"}
    diesel = readiness(0x0E | 0x40, 0x41, 0x40)  # compression ignition, components incomplete
    assert diesel == {"fuel_system": "complete", "components": "incomplete", "nmhc_catalyst": "complete",
                      "pm_filter": "incomplete"}


def test_descriptions_for_generic_and_other_codes():
    assert describe("P0115") == "engine coolant temperature sensor 1 circuit"
    assert describe("P2263") == "turbo/supercharger boost system performance"
    assert describe("P1123") == "manufacturer-specific powertrain code (fuel and air metering)"
    assert describe("U0100").startswith("generic network")


class Car:
    """The simulated car on its own virtual channel, idling, with trouble codes to report."""

    def __init__(self, diagnostics: EcuDiagnostics, ecu_tx_id: int = 0x7E8) -> None:
        self.channel = f"dtc-{next(_channels)}"
        self.bus = can.Bus(interface="virtual", channel=self.channel, receive_own_messages=False)
        self.recorder = can.Bus(interface="virtual", channel=self.channel)
        self.sim = SimulatedCar(self.bus, CarConfig(), IDLE, broadcast=False, ecu_tx_id=ecu_tx_id,
                                diagnostics=diagnostics).start()

    def frames(self) -> list[can.Message]:
        out = []
        while (msg := self.recorder.recv(0)) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        self.sim.stop()
        self.bus.shutdown()
        self.recorder.shutdown()


@pytest.fixture
def car_with_codes():
    truth = EcuDiagnostics(stored=["P0115", "P0420"], pending=["P0171"], permanent=["P0420"],
                           vin="JS3TD0D0000100001", calibration_ids=["33920-72KA0", "ABS-01"])
    car = Car(truth)
    yield car, truth
    car.close()


def dtc(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["dtc", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dtc_reports_the_ecus_codes_vin_and_readiness(car_with_codes, capsys):
    car, truth = car_with_codes
    code, out, err = dtc(capsys, "-i", "virtual", "-c", car.channel, "--format", "json")
    assert code == 0, err
    assert "transmits" in err
    found = json.loads(out)
    assert list(found) == ["vin", "mil_on", "dtc_count", "stored", "pending", "permanent", "freeze_frame",
                           "readiness"]
    assert found["vin"] == truth.vin and found["mil_on"] is True and found["dtc_count"] == 2
    assert found["stored"] == [{"code": "P0115", "ecu": "7E8"}, {"code": "P0420", "ecu": "7E8"}]
    assert found["pending"] == [{"code": "P0171", "ecu": "7E8"}]
    assert found["permanent"] == [{"code": "P0420", "ecu": "7E8"}]
    assert found["readiness"]["evaporative_system"] == "incomplete" and found["readiness"]["catalyst"] == "complete"
    frozen = found["freeze_frame"]
    assert frozen["dtc"] == "P0115" and frozen["ecu"] == "7E8"
    assert frozen["engine_speed_rpm"] == pytest.approx(CarConfig().idle_rpm, abs=50)
    assert frozen["vehicle_speed_kmh"] == 0
    sent = [m for m in car.frames() if m.arbitration_id != 0x7E8]
    assert {m.arbitration_id for m in sent} <= {0x7DF, 0x7E0} and 0x04 not in {m.data[1] for m in sent}


def test_dtc_table_describes_the_codes(car_with_codes, capsys):
    car, _ = car_with_codes
    code, out, _ = dtc(capsys, "-i", "virtual", "-c", car.channel)
    assert code == 0
    assert "check-engine     ON" in out and "P0115  engine coolant temperature sensor 1 circuit  (ECU 7E8)" in out
    assert "33920-72KA0" in out


def test_dtc_over_29_bit_can(tmp_path, capsys):
    truth = EcuDiagnostics(stored=["P0301"], vin="JS3TD0D0000100029")
    car = Car(truth, ecu_tx_id=0x18DAF110)
    config = tmp_path / "agent.toml"
    config.write_text("[obd]\nrequest_id = 0x18DB33F1\n", encoding="utf-8")
    try:
        code, out, err = dtc(capsys, "--config", str(config), "-i", "virtual", "-c", car.channel, "--format", "json")
    finally:
        car.close()
    assert code == 0, err
    found = json.loads(out)
    assert found["vin"] == truth.vin and found["stored"] == [{"code": "P0301", "ecu": "18DAF110"}]


def test_clear_never_runs_without_yes(car_with_codes, capsys):
    car, truth = car_with_codes
    code, _, err = dtc(capsys, "-i", "virtual", "-c", car.channel, "--clear")
    assert code == 2 and "--yes" in err and "erases" in err
    assert car.frames() == [] and truth.stored == ["P0115", "P0420"]  # nothing sent, nothing cleared
    code, out, err = dtc(capsys, "-i", "virtual", "-c", car.channel, "--clear", "--yes", "--format", "json")
    assert code == 0 and "erases" in err and "cleared by 7E8" in err
    assert "erasing stored codes: P0115 (7E8) P0420 (7E8)" in err and "erasing pending codes: P0171 (7E8)" in err
    found = json.loads(out)
    assert found["stored"] == found["pending"] == [] and found["mil_on"] is False
    assert found["permanent"] == [{"code": "P0420", "ecu": "7E8"}]  # permanent codes stay until the ECU sees the fix


def test_no_ecu_is_exit_1_saying_why(capsys):
    code, _, err = dtc(capsys, "-i", "virtual", "-c", "dtc-nobody")
    assert code == 1 and "no ECU answered" in err


def test_the_daemon_writes_events_when_codes_change():
    truth = EcuDiagnostics()
    car = Car(truth)
    agent = can.Bus(interface="virtual", channel=car.channel)
    points = []
    watch = DiagnosticsWatch(points.append, "kei")
    poller = ObdPoller(agent, PollSettings(response_timeout_s=0.3), ScaledClock(1.0))
    notifier = can.Notifier(agent, [poller])
    try:
        watch(poller)
        assert points == [] and watch.summary == "MIL off: no stored codes"
        truth.stored.append("P0115")  # a fault appears
        watch(poller)
        truth.stored.clear()
        watch(poller)
    finally:
        notifier.stop()
        agent.shutdown()
        car.close()
    kinds = [(p.tags["kind"], p.fields.get("code"), p.fields.get("change"), p.fields.get("mil_on")) for p in points]
    assert kinds == [("mil", None, None, True), ("dtc", "P0115", "new", None),
                     ("mil", None, None, False), ("dtc", "P0115", "gone", None)]
    assert all(p.measurement == "event" and p.tags["vehicle"] == "kei" for p in points)


def test_the_poller_reads_diagnostics_at_start_and_then_every_interval(tmp_path):
    from livedrive import live_drive

    reads = []
    lock = threading.Lock()

    def diagnostics(poller):
        with lock:
            reads.append((poller.clock.now(), read_diagnostics(poller.exchange).stored))

    drive = live_drive(Cycle("cruise", tuple([0.0] * 5 + [30.0] * 80 + [0.0] * 5)), "map",
                       car_options={"diagnostics": EcuDiagnostics(stored=["P0420"])},
                       poller_options={"diagnostics": diagnostics, "diagnostics_interval_s": 30.0})
    reads = [(t, codes) for t, codes in reads if t < 1775034000.0 + 90]  # the last may find the ignition off
    assert len(reads) == 3 and all(codes == [("P0420", "7E8")] for _, codes in reads)
    assert reads[0][0] - 1775034000.0 < 5  # at start
    assert all(30 <= b[0] - a[0] <= 36 for a, b in zip(reads, reads[1:]))  # due every 30 s, read between polls
    [trip] = drive.pipeline.stats()["trips"]
    assert trip["distance_km"] == pytest.approx(drive.truth.distance_km, rel=0.03)


def test_the_live_view_shows_the_codes():
    import io

    from firmware_bridge.pipeline import Pipeline, PipelineOptions
    from firmware_bridge.sinks.console import LiveView

    stream = io.StringIO()
    view = LiveView(Pipeline(PipelineOptions()), stream=stream)
    watch = DiagnosticsWatch(None, "kei")
    truth = EcuDiagnostics(stored=["P0115"])
    car = Car(truth)
    agent = can.Bus(interface="virtual", channel=car.channel)
    poller = ObdPoller(agent, PollSettings(response_timeout_s=0.3), ScaledClock(1.0))
    notifier = can.Notifier(agent, [poller])
    try:
        watch(poller)
    finally:
        notifier.stop()
        agent.shutdown()
        car.close()
    view.notes["dtc"] = watch.summary  # what run and demo do on every tick
    view.update(force=True)
    assert stream.getvalue().rstrip().endswith("| MIL ON: P0115")


def test_diagnostics_that_fail_never_stop_the_polling(tmp_path):
    from livedrive import live_drive

    calls = []

    def broken(poller):
        calls.append(poller.clock.now())
        raise ValueError("an answer nobody can read")

    drive = live_drive(Cycle("cruise", tuple([0.0] * 5 + [30.0] * 60 + [0.0] * 5)), "map",
                       poller_options={"diagnostics": broken, "diagnostics_interval_s": 20.0})
    assert len(calls) >= 3  # tried again at every interval
    [trip] = drive.pipeline.stats()["trips"]
    assert trip["distance_km"] == pytest.approx(drive.truth.distance_km, rel=0.03)
