"""The car's bus stays safe by construction: every frame the agent sends is counted on a virtual bus, under
every polling setting, and none is beyond the cap or outside the OBD-II request IDs; passive sends nothing;
settings that would lift the cap or name another ID are refused before anything is sent."""

from __future__ import annotations

import logging
import time

import can
import pytest

from firmware_bridge.clock import ScaledClock
from firmware_bridge.errors import InputError
from firmware_bridge.obd.diagnostics import read_diagnostics
from firmware_bridge.obd.poller import ObdPoller, PollSettings
from firmware_bridge.sim import CarConfig
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.sim.obd import EcuDiagnostics

from conftest import run_cli
from livedrive import live_drive

#: The OBD-II request IDs, written out here rather than taken from the rule under test.
ALLOWED_11BIT = {0x7DF, *range(0x7E0, 0x7E8)}
ALLOWED_29BIT = {0x18DB33F1, *(0x18DA00F1 | ecu << 8 for ecu in range(256) if ecu != 0xF1)}
CYCLE = Cycle("short", tuple([i * 2.0 for i in range(20)] + [40.0] * 50 + [40.0 - i * 2.0 for i in range(21)]))


def agent_frames(log_path, ecu_tx_id):
    """Every frame on the recorded bus that the simulated car did not send (it sends only its answers)."""
    return [m for m in can.LogReader(log_path) if m.arbitration_id != ecu_tx_id]


def busiest_second(frames) -> int:
    times = sorted(m.timestamp for m in frames)
    return max((sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times)), default=0)


@pytest.mark.parametrize("name, settings, ecu_tx_id, diagnostics", [
    ("default", PollSettings(response_timeout_s=0.5), 0x7E8, False),
    ("fastest single PIDs", PollSettings(max_requests_per_s=50, fast_interval_s=0.01, slow_interval_s=0.05,
                                         max_pids_per_request=1, response_timeout_s=0.5), 0x7E8, False),
    ("six PIDs, flow control", PollSettings(max_requests_per_s=50, fast_interval_s=0.05, max_pids_per_request=6,
                                            response_timeout_s=0.5), 0x7E8, False),
    ("physical 0x7E0", PollSettings(request_id=0x7E0, response_timeout_s=0.5), 0x7E8, False),
    ("29-bit functional", PollSettings(request_id=0x18DB33F1, response_timeout_s=0.5), 0x18DAF110, False),
    ("29-bit physical", PollSettings(request_id=0x18DA10F1, max_pids_per_request=6, response_timeout_s=0.5),
     0x18DAF110, False),
    ("diagnostics every 30 s", PollSettings(response_timeout_s=0.5), 0x7E8, True),
])
def test_every_frame_sent_is_counted_capped_and_an_obd_request(tmp_path, name, settings, ecu_tx_id, diagnostics):
    poller_options = {"diagnostics": read_diagnostics_of, "diagnostics_interval_s": 30.0} if diagnostics else {}
    car_options = {"ecu_tx_id": ecu_tx_id, "diagnostics": EcuDiagnostics(stored=["P0115", "P0420"])}
    drive = live_drive(CYCLE, "map", record=tmp_path / "bus.log", settings=settings,
                       car_options=car_options, poller_options=poller_options)
    sent = agent_frames(drive.log_path, ecu_tx_id)
    allowed = ALLOWED_29BIT if ecu_tx_id > 0x7FF else ALLOWED_11BIT
    assert sent and {m.arbitration_id for m in sent} <= allowed
    assert all(m.is_extended_id == (ecu_tx_id > 0x7FF) for m in sent)
    assert len(sent) == drive.poller.frames_sent  # the recording and the agent's own count agree
    cap = settings.max_requests_per_s
    assert busiest_second(sent) <= cap + 1  # a request and its flow control may share the last slot
    duration_s = sent[-1].timestamp - sent[0].timestamp
    assert len(sent) <= cap * duration_s + 2
    if diagnostics:
        services = {m.data[1] for m in sent}
        assert {0x01, 0x02, 0x03, 0x07, 0x09, 0x0A} <= services and 0x04 not in services  # never clears
    [trip] = drive.pipeline.stats()["trips"]
    assert trip["distance_km"] == pytest.approx(drive.truth.distance_km, rel=0.03)


def read_diagnostics_of(poller):
    read_diagnostics(poller.exchange)


def test_passive_sends_nothing(tmp_path):
    drive = live_drive(CYCLE, "map", record=tmp_path / "bus.log", poll=False,
                       config=CarConfig(), broadcast=True)
    ecu_and_broadcast = list(can.LogReader(drive.log_path))
    assert ecu_and_broadcast  # the car talks ...
    assert not [m for m in ecu_and_broadcast if m.arbitration_id in ALLOWED_11BIT | ALLOWED_29BIT]  # ... we do not


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 1000, -5, 0, 50.5, True, "10"])
def test_a_cap_that_is_not_in_0_to_50_is_refused(rate):
    with pytest.raises(InputError, match="max_requests_per_s"):
        PollSettings(max_requests_per_s=rate)


@pytest.mark.parametrize("request_id", [-1, 0x123, 0x7E8, 0x7F0, 0x18DAF110, 0x18DAF1F1, 0x18DB33F2, 0x20000000])
def test_request_ids_outside_obd_ii_are_refused(request_id):
    with pytest.raises(InputError, match="request_id"):
        PollSettings(request_id=request_id)


@pytest.mark.parametrize("request_id", [0x7DF, 0x7E0, 0x7E7, 0x18DB33F1, 0x18DA10F1, 0x18DA17F1])
def test_obd_ii_request_ids_are_accepted(request_id):
    assert PollSettings(request_id=request_id).request_id == request_id


@pytest.mark.parametrize("key, value", [("max_requests_per_s", "nan"), ("max_requests_per_s", "inf"),
                                        ("max_requests_per_s", "1000"), ("max_requests_per_s", "-5"),
                                        ("max_requests_per_s", "0"), ("request_id", "-1"),
                                        ("request_id", "0x7E8")])
def test_run_refuses_the_setting_with_exit_2_naming_the_key(tmp_path, key, value):
    config = tmp_path / "agent.toml"
    config.write_text(f"[obd]\nenabled = true\n{key} = {value}\n", encoding="utf-8")
    result = run_cli("run", "--config", config, "-i", "virtual", "-c", f"safety-{key}")
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_silence_is_a_warning_naming_what_it_usually_means(caplog):
    bus = can.Bus(interface="virtual", channel="nobody-answers")
    poller = ObdPoller(bus, PollSettings(response_timeout_s=0.2), ScaledClock(20.0))
    notifier = can.Notifier(bus, [poller])
    with caplog.at_level(logging.INFO, logger="firmware_bridge"):
        poller.start()
        time.sleep(3.0)  # a minute of car time: discovery, then back-off probes after 1, 2, 4, 8, 16 s
        poller.stop()
    notifier.stop()
    bus.shutdown()
    assert poller.requests_sent >= 4
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # WARNING (seen under systemd), once per silence, not at every probe
    message = warnings[0].getMessage()
    assert "no answer" in message and "asleep" in message and "protocol" in message


def test_one_id_rule_for_every_user():
    import numpy as np

    from firmware_bridge.decode.decoder import obd_alias
    from firmware_bridge.obd import ids
    from firmware_bridge.sources.bus import bus_filters
    from firmware_bridge.decode.dbc import load_database

    candidates = [(i, False) for i in range(0x7D0, 0x800)] + [
        (0x18DA00F1 | e << 8, True) for e in range(256)] + [(0x18DAF100 | e, True) for e in range(256)] + [
        (0x18DB33F1, True), (0x18DB33F2, True), (0x18DAF1, True), (0x7E8, True)]
    frame_ids = np.array([c[0] for c in candidates], dtype=np.uint32)
    extended = np.array([c[1] for c in candidates])
    mask = ids.response_mask(frame_ids, extended)
    filters = [f for f in bus_filters(load_database()) if f["can_id"] in (0x7E8, 0x18DAF100)]
    for (frame_id, ext), masked in zip(candidates, mask.tolist()):
        response = ids.is_response(frame_id, ext)
        assert masked == response  # the batch decoder's columns
        assert (obd_alias(frame_id, ext) == 0x7E8) == response  # the decoder's alias
        assert response == any(f["extended"] == ext and frame_id & f["can_mask"] == f["can_id"] for f in filters)
        expected_request = (frame_id in ALLOWED_29BIT) if ext else (frame_id in ALLOWED_11BIT)
        assert ids.is_request(frame_id, ext) == expected_request
        if response and frame_id != 0x18DAF1F1:  # flow control goes to the physical ID of the ECU that answered
            assert ids.is_request(ids.response_to_physical_request(frame_id, ext), ext)


def test_a_first_frame_from_the_testers_own_address_gets_no_flow_control():
    bus = can.Bus(interface="virtual", channel="safety-f1")
    listener = can.Bus(interface="virtual", channel="safety-f1")
    poller = ObdPoller(bus, PollSettings())
    poller._waiting = frozenset({0x0C})  # as while a request waits for its answer
    poller.on_message_received(can.Message(arbitration_id=0x18DAF1F1, is_extended_id=True,
                                           data=[0x10, 0x14, 0x49, 0x02, 0x01, 0x41, 0x42, 0x43]))
    assert listener.recv(0.1) is None and poller.frames_sent == 0
    bus.shutdown()
    listener.shutdown()
