"""Multi-PID requests (up to 6 PIDs, SAE J1979): ISO-TP reassembly and the split into single-PID frames, log
replay of multi-frame answers, the simulated ECU answering them live on a virtual bus, and the poller falling
back per PID where an ECU does not."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import can
import pytest

from firmware_bridge.clock import ScaledClock
from firmware_bridge.obd import isotp, pids
from firmware_bridge.obd.poller import ObdPoller, PollSettings
from firmware_bridge.pipeline import Pipeline
from firmware_bridge.sim import CarConfig, KeiCar, ObdResponder
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.sources.logs import LogProblems, read_logs

from conftest import T0, run_cli
from livedrive import live_drive

DATA = Path(__file__).parent / "data" / "elm327"


def frame(arbitration_id: int, hex_data: str, t: float = T0) -> can.Message:
    return can.Message(timestamp=t, arbitration_id=arbitration_id, is_extended_id=arbitration_id > 0x7FF,
                       data=bytes.fromhex(hex_data))


def ramp(up_s, cruise_s, down_s, v_kmh):
    return ([v_kmh * i / up_s for i in range(up_s)] + [v_kmh] * cruise_s
            + [v_kmh * (1 - i / down_s) for i in range(down_s + 1)])


# -- ISO-TP and the split ----------------------------------------------------------------------------------


def test_split_by_j1979_lengths():
    assert isotp.split_mode01(bytes.fromhex("410D320C1AF80B23")) == [
        (0x0D, b"\x32"), (0x0C, b"\x1a\xf8"), (0x0B, b"\x23")]
    assert isotp.split_mode01(bytes.fromhex("410D320C1A")) is None  # cut short
    assert isotp.split_mode01(bytes.fromhex("410D32FF01")) is None  # a PID of unknown length
    assert isotp.split_mode01(bytes.fromhex("4902015750")) is None  # another service
    assert pids.DATA_BYTES[0xA6] == 4 and pids.DATA_BYTES[0x03] == 2 and pids.DATA_BYTES[0x00] == 4


def test_data_lengths_agree_with_python_obd():
    obd = pytest.importorskip("obd")
    theirs = {c.pid: c.bytes - 2 for c in obd.commands[1] if c is not None}
    assert {pid: pids.DATA_BYTES.get(pid) for pid in theirs} == theirs


def test_single_frame_with_several_pids_is_split():
    answers = isotp.ObdAnswers()
    parts = answers.split(frame(0x7E8, "06410D330C1B0055", t=12.5))
    assert [p.data.hex() for p in parts] == ["03410d3355555555", "04410c1b00555555"]
    assert {p.timestamp for p in parts} == {12.5} and {p.arbitration_id for p in parts} == {0x7E8}
    assert answers.split(frame(0x7E8, "04410C1B00555555")) is None  # one PID: left as it is
    assert answers.split(frame(0x123, "06410D330C1B0055")) is None  # not an OBD answer


def test_multi_frame_answer_is_reassembled():
    answers = isotp.ObdAnswers()
    assert answers.split(frame(0x7E8, "100E410D320C1AF8", 1.0)) == []
    assert answers.split(frame(0x7E8, "210B230F46048011", 1.1)) == []
    parts = answers.split(frame(0x7E8, "2233555555555555", 1.2))
    assert [(pids.response_pid(p), p.data[3:3 + pids.DATA_BYTES[pids.response_pid(p)]].hex()) for p in parts] == [
        (0x0D, "32"), (0x0C, "1af8"), (0x0B, "23"), (0x0F, "46"), (0x04, "80"), (0x11, "33")]
    assert {p.timestamp for p in parts} == {1.2}


def test_broken_sequences_go_on_as_raw_frames():
    answers = isotp.ObdAnswers()
    first = frame(0x7E9, "100E410D320C1AF8")
    assert answers.split(first) == []
    wrong = frame(0x7E9, "220B230F46048011")  # consecutive frame 2 where 1 was due
    assert answers.split(wrong) == [first, wrong]
    assert answers.split(frame(0x7E9, "2133555555555555")) is None  # stray consecutive frame
    vin = [frame(0x7E8, "1014490201575030"), frame(0x7E8, "215A5A5A39395A54"), frame(0x7E8, "2253333930303030")]
    assert [answers.split(f) for f in vin] == [[], [], vin]  # not mode 01: the frames as they came


def test_flow_control_goes_to_the_physical_id():
    fc = isotp.flow_control(frame(0x7E9, "100E410D320C1AF8"))
    assert (fc.arbitration_id, fc.is_extended_id, fc.data.hex()) == (0x7E1, False, "3000005555555555")
    fc = isotp.flow_control(frame(0x18DAF110, "100E410D320C1AF8"))
    assert (fc.arbitration_id, fc.is_extended_id) == (0x18DA10F1, True)


def test_replay_of_multi_frame_answers_decodes_every_pid():
    pipeline = Pipeline()
    decoded = []
    pipeline.frame_listeners.append(decoded.append)
    pipeline.feed_messages(read_logs([DATA / "multi-pid-answers.log"], LogProblems()))
    answers = [(f.t, f.signals["pid"], f.frame_id) for f in decoded if f.message == "OBD2_RESPONSE"]
    assert answers == [(T0 + 0.006, pid, 0x7E8) for pid in (0x0D, 0x0C, 0x0B, 0x0F, 0x04, 0x11)] + [
        (T0 + 0.102, 0x0D, 0x7E8), (T0 + 0.102, 0x0C, 0x7E8), (T0 + 0.202, 0x0D, 0x18DAF110),
        (T0 + 0.202, 0x0C, 0x18DAF110)]
    first = {f.signals["pid"]: f.signals for f in decoded[:8] if f.message == "OBD2_RESPONSE"}
    assert first[0x0D]["vehicle_speed_kmh"] == 50 and first[0x0C]["engine_speed_rpm"] == 1726
    assert first[0x0B]["intake_map_kpa"] == 35 and first[0x0F]["intake_air_temp_c"] == 30
    assert pipeline.state.values["speed_kmh"] == 52 and pipeline.state.values["engine_rpm"] == 1730
    counts = pipeline.decoder.counts
    assert counts.malformed == 0 and counts.unknown == 3  # the VIN answer: another service, not an error


def test_replay_cli_reads_multi_frame_answers():
    result = run_cli("stats", DATA / "multi-pid-answers.log", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"]["malformed"] == 0


# -- the simulated ECU ---------------------------------------------------------------------------------------


def test_simulated_ecu_answers_like_a_real_one():
    ecu = ObdResponder(KeiCar(CarConfig(), Cycle("ramp", tuple(ramp(10, 10, 10, 40.0)))), "map")
    [single] = ecu.respond_frames(pids.request_many((0x0D, 0x0C)), 12.0)
    assert single.data[0] == 6 and single.data[1:3].hex() == "410d"  # 6 bytes: one single frame
    [first] = ecu.respond_frames(pids.request_many((0x0D, 0x0C, 0x0B, 0x0F, 0x04, 0x11)), 12.0)
    assert first.data[:2].hex() == "100e"
    assert ecu.respond_frames(frame(0x7E1, "3000005555555555"), 12.0) == []  # flow control for another ECU
    rest = ecu.respond_frames(frame(0x7E0, "3000005555555555"), 12.0)
    assert [f.data[0] for f in rest] == [0x21, 0x22]
    answers = isotp.ObdAnswers()
    parts = [p for f in (first, *rest) for p in answers.split(f)]
    assert [pids.response_pid(p) for p in parts] == [0x0D, 0x0C, 0x0B, 0x0F, 0x04, 0x11]
    assert ecu.respond_frames(pids.request_many((0x10, 0x5E)), 12.0) == []  # none supported: silence


def test_live_multi_pid_polling_on_a_virtual_bus(tmp_path):
    cycle = Cycle("short", tuple(ramp(30, 60, 30, 50.0)))
    drive = live_drive(cycle, "map", record=tmp_path / "multi.log",
                       settings=PollSettings(max_pids_per_request=6, response_timeout_s=0.5))
    [trip] = drive.pipeline.stats()["trips"]
    assert trip["distance_km"] == pytest.approx(drive.truth.distance_km, rel=0.01)
    assert trip["fuel_used_l"] == pytest.approx(drive.truth.fuel_l, rel=0.05)
    frames = list(can.LogReader(drive.log_path))
    requests = [f for f in frames if f.arbitration_id == 0x7DF]
    assert max(f.data[0] for f in requests) == 7  # six PIDs in one request
    assert any(f.arbitration_id == 0x7E8 and f.data[0] == 0x10 for f in frames)  # first frames ...
    assert any(f.arbitration_id == 0x7E0 and f.data[0] == 0x30 for f in frames)  # ... flow control ...
    assert any(f.arbitration_id == 0x7E8 and f.data[0] == 0x21 for f in frames)  # ... consecutive frames
    # unanswered only once the car is off at the end; no PID had to be asked alone
    # a few late answers on a busy 2-core machine are fine; a bus gone silent (many in a row) is not
    assert drive.poller.timeouts <= 3 * drive.poller.settings.silence_after_misses and not drive.poller._alone
    replay = run_cli("stats", drive.log_path, "--format", "json")  # the recorded drive replays the same
    [replayed] = json.loads(replay.stdout)["trips"]
    assert replayed["distance_km"] == pytest.approx(trip["distance_km"], rel=0.001)


# -- fallback per PID ------------------------------------------------------------------------------------------


class PickyEcu:
    """An ECU on a virtual bus that answers single-PID requests only: ignoring multi-PID ones (``ignore``), or
    answering only the first PID they ask (``first_only``)."""

    def __init__(self, channel: str, clock, behaviour: str) -> None:
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.ecu = ObdResponder(KeiCar(CarConfig(), Cycle("cruise", (40.0,) * 600)), "map")
        self.clock, self.behaviour, self.t0 = clock, behaviour, clock.now()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            request = self.bus.recv(0.02)
            if request is None or (self.behaviour == "ignore" and request.data[0] > 2):
                continue
            answer = self.ecu.respond(request, self.clock.now() - self.t0)  # the first PID only
            if answer is not None:
                self.bus.send(answer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.bus.shutdown()


@pytest.mark.parametrize("behaviour", ["ignore", "first_only"])
def test_poller_falls_back_per_pid(behaviour):
    channel = f"picky-{behaviour}"
    clock = ScaledClock(20.0)
    ecu = PickyEcu(channel, clock, behaviour)
    bus = can.Bus(interface="virtual", channel=channel)
    seen: dict[int, int] = {}

    class Count(can.Listener):
        def on_message_received(self, msg):
            pid = pids.response_pid(msg)
            if pid is not None:
                seen[pid] = seen.get(pid, 0) + 1

    poller = ObdPoller(bus, PollSettings(max_pids_per_request=6, response_timeout_s=0.3), clock)
    notifier = can.Notifier(bus, [poller, Count()])
    poller.start()
    try:
        threading.Event().wait(1.5)  # 30 s of car time
    finally:
        poller.stop()
        notifier.stop()
        bus.shutdown()
        ecu.close()
    fast, _ = pids.fast_and_slow(poller.supported)
    assert set(fast) - {fast[0]} <= poller._alone  # left out twice in a row: asked alone
    assert all(seen.get(pid, 0) >= 10 for pid in fast)  # and every fast PID keeps coming
