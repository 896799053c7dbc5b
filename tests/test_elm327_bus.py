"""Elm327Bus against recorded and hand-written adapter dialogues (tests/data/elm327/), over a fake serial port:
start-up, frames, clone quirks, every error reply, partial reads, baud detection, headers, reconnection and
monitor mode."""

from __future__ import annotations

import ast
import threading
import time
from collections import defaultdict
from pathlib import Path

import can
import pytest
import serial

from firmware_bridge.obd import isotp, pids
from firmware_bridge.sources.elm327 import Elm327Bus, header_commands, parse_frame, request_payload

DATA = Path(__file__).parent / "data" / "elm327"
GARBLED = b"\xf8\x80\x00\xfe"  # what a wrong baud rate turns an answer into


class Dialogue:
    """What an adapter answers to each command, read from a tests/data/elm327 file."""

    def __init__(self, name: str) -> None:
        self.replies: dict[str, list[bytes]] = defaultdict(list)
        for line in (DATA / name).read_text(encoding="ascii").splitlines():
            if line and not line.startswith("#"):
                command, reply = line.split("\t")
                self.replies[command].append(ast.literal_eval(reply).encode("ascii"))
        self._asked: dict[str, int] = defaultdict(int)

    def reply(self, command: str) -> bytes:
        replies = self.replies.get(command) or self.replies.get("*") or [b"?\r\r>"]
        i = self._asked[command]
        self._asked[command] += 1
        return replies[min(i, len(replies) - 1)]


class FakePort:
    """Enough of pyserial's Serial for the bus: answers each command line from a dialogue, at one baud rate."""

    def __init__(self, dialogue: Dialogue, baud: int = 38400, chunk: int | None = None) -> None:
        self.dialogue, self.adapter_baud, self.chunk = dialogue, baud, chunk
        self.baudrate, self.timeout = 38400, 0.02
        self.written: list[str] = []
        self._pending = bytearray()
        self._line = b""
        self._cond = threading.Condition()
        self.unplugged = self.closed = False

    def _check(self) -> None:
        if self.unplugged or self.closed:
            raise serial.SerialException("device disconnected")

    @property
    def in_waiting(self) -> int:
        self._check()
        return min(len(self._pending), self.chunk or len(self._pending))

    def read(self, size: int = 1) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self.unplugged or self.closed, timeout=self.timeout)
            self._check()
            data = bytes(self._pending[:min(size, self.chunk or size)])
            del self._pending[:len(data)]
            return data

    def write(self, data: bytes) -> int:
        self._check()
        self._line += data
        while b"\r" in self._line:
            line, _, self._line = self._line.partition(b"\r")
            command = line.decode("ascii")
            self.written.append(command)
            right_baud = self.baudrate == self.adapter_baud
            with self._cond:
                self._pending += self.dialogue.reply(command) if right_baud else GARBLED
                self._cond.notify_all()
        return len(data)

    def reset_input_buffer(self) -> None:
        with self._cond:
            self._pending.clear()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def unplug(self) -> None:
        with self._cond:
            self.unplugged = True
            self._cond.notify_all()


def open_bus(name: str, **kwargs) -> tuple[Elm327Bus, FakePort]:
    port_options = {k: kwargs.pop(k) for k in ("baud", "chunk") if k in kwargs}
    port = FakePort(Dialogue(name), **port_options)
    bus = can.Bus(interface="elm327", channel="/dev/fake", port_factory=lambda url, baud: port, **kwargs)
    return bus, port


@pytest.fixture
def closing():
    buses = []
    yield buses.append
    for bus in buses:
        bus.shutdown()


def ask(bus: can.BusABC, *pid_list: int, arbitration_id: int = 0x7DF) -> list[can.Message]:
    """Send one mode 01 request; every frame received until the adapter falls quiet."""
    bus.send(pids.request_many(pid_list, arbitration_id))
    frames = []
    while (msg := bus.recv(0.15)) is not None:
        frames.append(msg)
    return frames


def decoded_pids(frames: list[can.Message]) -> dict[int, bytes]:
    """Single-PID answers by PID after ISO-TP reassembly and the multi-PID split (what the DBC sees)."""
    answers, out = isotp.ObdAnswers(), {}
    for frame in frames:
        parts = answers.split(frame)
        for part in (frame,) if parts is None else parts:
            pid = pids.response_pid(part)
            if pid is not None:
                out[pid] = bytes(part.data[3:3 + pids.DATA_BYTES[pid]])
    return out


# -- line parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line, arbitration_id, extended, data", [
    ("7E8 04 41 0C 1F 40", 0x7E8, False, "04410c1f40000000"),
    ("7E804410C1F40", 0x7E8, False, "04410c1f40000000"),
    ("7e8 10 0e 41 0c 14 46 0d 27", 0x7E8, False, "100e410c14460d27"),
    ("18 DA F1 10 04 41 0C 1F 40", 0x18DAF110, True, "04410c1f40000000"),
    ("18DAF11004410C1F40", 0x18DAF110, True, "04410c1f40000000"),
])
def test_response_lines_become_frames_as_on_the_bus(line, arbitration_id, extended, data):
    frame = parse_frame(line, pad=True)
    assert (frame.arbitration_id, frame.is_extended_id, frame.data.hex()) == (arbitration_id, extended, data)


@pytest.mark.parametrize("line", ["NO DATA", "SEARCHING...", "410C1F40", "7E8", "OK", "ELM327 v1.5", "?", "",
                                  "7E8 01 02 03 04 05 06 07 08 09", "FFFFFFFF 01"])
def test_other_lines_are_not_frames(line):
    assert parse_frame(line, pad=True) is None


def test_requests_and_headers():
    assert request_payload(pids.request_many((0x0C, 0x0D))) == bytes((0x01, 0x0C, 0x0D))
    flow_control = can.Message(arbitration_id=0x7E0, is_extended_id=False, data=[0x30, 0, 0, 0, 0, 0, 0, 0])
    assert request_payload(flow_control) is None
    with pytest.raises(can.CanOperationError, match="single-frame"):
        request_payload(can.Message(arbitration_id=0x7E0, data=[0x10, 0x14, 0x2E, 0xF1, 0x90, 1, 2, 3]))
    assert header_commands(0x7E0, False) == ["ATSH7E0"]
    assert header_commands(0x18DB33F1, True) == ["ATCP18", "ATSHDB33F1"]


# -- dialogues -----------------------------------------------------------------------------------------------


def test_start_up_and_answers_recorded_from_elm327_emulator(closing):
    bus, port = open_bus("emulator-car.txt")
    closing(bus)
    assert isinstance(bus, Elm327Bus) and bus.version == "ELM327 v1.5"
    assert port.written == ["ATI", "ATZ", "ATE0", "ATL0", "ATS0", "ATH1", "ATSP0", "ATAT1"]
    [bitmap] = ask(bus, 0x00)  # SEARCHING... first
    assert bitmap.data.hex() == "064100be3fa81300" and bitmap.arbitration_id == 0x7E8
    assert port.written[-2:] == ["0100", "ATDPN"]  # the adapter's default header; which protocol it found
    assert bus.active_protocol == "6" and bus.obd_pids_per_request == 6
    [rpm] = ask(bus, 0x0C)
    assert rpm.data.hex() == "04410c145f000000" and "ATSH7DF" not in port.written
    frames = ask(bus, 0x0D, 0x0C, 0x10, 0x03, 0x04, 0x44)  # first frame + 2 consecutive frames
    assert [f.data[0] for f in frames] == [0x10, 0x21, 0x22] and len({f.timestamp for f in frames}) <= 3
    assert decoded_pids(frames) == {0x0D: b"\x27", 0x0C: b"\x41\xc2", 0x10: b"\x18\x1f", 0x03: b"\x00\x00",
                                    0x04: b"\xff", 0x44: b"\x7e\x71"}
    assert bus.replies["SEARCHING..."] == 1


def test_clone_quirks_ok_to_everything_echo_spaces_linefeeds(closing):
    bus, port = open_bus("clone-ok-to-everything.txt", chunk=3)  # and answers trickling in 3 bytes at a time
    closing(bus)
    assert bus.version == "ELM327 v2.1"
    frames = ask(bus, 0x0C, 0x0D, arbitration_id=0x7E0)
    assert port.written[-3:] == ["ATSH7E0", "010C0D", "ATDPN"]  # "OK": the clone does not say; CAN it is
    assert decoded_pids(frames) == {0x0C: b"\x1a\xf8", 0x0D: b"\x32"}
    frames = ask(bus, 0x0D, 0x0C, 0x0B, arbitration_id=0x7E0)
    assert decoded_pids(frames) == {0x0D: b"\x32", 0x0C: b"\x1a\xf8", 0x0B: b"\x23"}
    [speed] = ask(bus, 0x0D, arbitration_id=0x7E0)  # spaces missing here and there
    assert speed.data.hex() == "03410d3200000000"
    assert port.written.count("ATSH7E0") == 1  # the header is set only when it changes
    assert bus.replies["unrecognised"] == 0


@pytest.mark.parametrize("command, reply", [
    (0x05, "NO DATA"), (0x0F, "STOPPED"), (0x33, "?"), (0x42, "CAN ERROR"), (0x46, "BUFFER FULL"),
    (0x5C, "UNABLE TO CONNECT"), (0x11, "BUS INIT: ...ERROR")])
def test_every_error_reply_is_survived(closing, command, reply):
    bus, _ = open_bus("errors.txt")
    closing(bus)
    frames = ask(bus, command)
    assert bus.replies[reply] == 1
    if reply == "CAN ERROR":
        assert [f.is_error_frame for f in frames] == [True]
    else:
        assert frames == []
    [speed] = ask(bus, 0x0D)  # and the next request is answered
    assert speed.data.hex() == "03410d3200000000"


def test_baud_rate_is_detected(closing):
    bus, port = open_bus("emulator-car.txt", baud=115200)
    closing(bus)
    assert port.baudrate == 115200
    bus, port = open_bus("emulator-car.txt", baud=9600, baudrate=9600)
    closing(bus)
    assert port.written[0] == "ATI" and port.baudrate == 9600
    with pytest.raises(can.CanInitializationError, match="no ELM327 prompt at 38400, 9600, 115200, 230400, 500000"):
        open_bus("emulator-car.txt", baud=57600)


def test_protocol_from_the_bitrate_or_given(closing):
    bus, port = open_bus("clone-ok-to-everything.txt", bitrate=500000, adaptive_timing=2)
    closing(bus)
    assert "ATSP6" in port.written and "ATAT2" in port.written
    bus, port = open_bus("clone-ok-to-everything.txt", protocol="7")
    closing(bus)
    assert "ATSP7" in port.written


def test_headers_29_bit_and_refused(closing):
    bus, port = open_bus("clone-ok-to-everything.txt")
    closing(bus)
    bus.send(pids.request_many((0x0C,), 0x18DB33F1))
    assert port.written[-3:] == ["ATCP18", "ATSHDB33F1", "010C"]
    bus, port = open_bus("emulator-car.txt")  # "?" to anything not recorded, ATSH7E0 included
    closing(bus)
    with pytest.raises(can.CanOperationError, match="rejects ATSH7E0"):
        bus.send(pids.request_many((0x0C,), 0x7E0))


def test_flow_control_is_left_to_the_adapter(closing):
    bus, port = open_bus("emulator-car.txt")
    closing(bus)
    written = len(port.written)
    bus.send(isotp.flow_control(can.Message(arbitration_id=0x7E8, is_extended_id=False, data=[0x10, 0x14])))
    assert len(port.written) == written


def test_timestamps_from_the_given_clock(closing):
    class Clock:
        speedup = 1.0

        def now(self):
            return 1775034000.0

    bus, _ = open_bus("emulator-car.txt", clock=Clock())
    closing(bus)
    [rpm] = ask(bus, 0x0C)
    assert rpm.timestamp == 1775034000.0 and rpm.channel == "/dev/fake"


def test_reconnects_with_back_off_when_the_adapter_comes_back(closing):
    dialogue = "emulator-car.txt"
    ports = [FakePort(Dialogue(dialogue))]
    attempts = []

    def factory(url, baud):
        attempts.append(time.monotonic())
        if len(attempts) in (2, 3):  # unplugged for two attempts
            raise serial.SerialException(f"could not open port {url}")
        if len(attempts) > 1:
            ports.append(FakePort(Dialogue(dialogue)))
        return ports[-1]

    bus = Elm327Bus("/dev/rfcomm0", port_factory=factory, reconnect_max_s=0.5)
    closing(bus)
    assert ask(bus, 0x0C)
    ports[0].unplug()
    with pytest.raises(can.CanOperationError, match="not connected|write failed"):
        for _ in range(50):  # the reader thread notices within its read timeout
            bus.send(pids.request((0x0C)))
            time.sleep(0.02)
    deadline = time.monotonic() + 5
    while bus.reconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bus.reconnects == 1 and len(attempts) == 4
    assert all(later - earlier >= 0.45 for earlier, later in zip(attempts[1:], attempts[2:]))  # backing off
    [rpm] = ask(bus, 0x0C)
    assert rpm.data.hex() == "04410c145f000000"  # a fresh adapter answers from the start of its sequence


def test_monitor_mode_restarts_after_buffer_full_and_cannot_send(closing):
    bus, port = open_bus("monitor.txt", monitor=True)
    closing(bus)
    frames = []
    deadline = time.monotonic() + 2
    while len(frames) < 4 and time.monotonic() < deadline:
        if (msg := bus.recv(0.1)) is not None:
            frames.append(msg)
    assert [(f.arbitration_id, f.data.hex()) for f in frames] == [
        (0x1A0, "1122"), (0x7E8, "03410d3255555555"), (0x18DAF110, "04410c1af8aaaaaa"), (0x412, "fe00017227")]
    assert "ATCAF0" in port.written and port.written.count("ATMA") == 2 and bus.replies["BUFFER FULL"] == 1
    with pytest.raises(can.CanOperationError, match="monitor mode"):
        bus.send(pids.request(0x0C))


def test_monitor_mode_on_an_adapter_without_atma_gives_up(closing, caplog):
    bus, port = open_bus("no-atma.txt", monitor=True)
    closing(bus)
    time.sleep(0.2)
    assert port.written.count("ATMA") == 1 and "does not monitor" in caplog.text


def test_absent_device_is_a_one_line_error():
    from firmware_bridge.errors import InputError
    from firmware_bridge.sources.bus import open_bus as open_live_bus

    with pytest.raises(InputError, match="cannot open CAN bus interface=elm327 channel=/dev/nonexistent-elm"):
        open_live_bus("elm327", "/dev/nonexistent-elm")
