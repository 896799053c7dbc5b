"""ELM327 OBD-II adapters (genuine and clones; USB, Bluetooth rfcomm, Wi-Fi) as a python-can bus over pyserial.

``can.Bus(interface="elm327", channel="/dev/ttyUSB0")`` works wherever python-can does (the ``can.interface``
entry point), so the OBD-II poller and the pipeline run over an ELM327 exactly as over SocketCAN. The channel is
a pyserial URL: a device (``/dev/ttyUSB0``, ``/dev/rfcomm0``, ``COM5``), optionally ``@38400`` for the serial
baud rate, or ``socket://192.168.0.10:35000`` for Wi-Fi adapters.

What an ELM327 is not, and so what this bus cannot do:

- It is a half-duplex request/response device. ``send()`` writes one request (the header with ``ATSH`` when it
  changes, then the payload in hex, e.g. ``010C``); the answers come back as text lines and the adapter's ``>``
  prompt says it is done. The next ``send()`` waits for that prompt (up to ``command_timeout_s``).
- It sends single-frame ISO-TP requests only and handles flow control itself: a flow-control frame given to
  ``send()`` is dropped, and multi-frame answers arrive as their raw first/consecutive frames.
- It hears only the answers to its own requests: no bus-wide listening, except in monitor mode
  (``monitor=True``, ``ATMA``), which shows every frame but cannot transmit, and on a busy bus overflows the
  adapter's small buffer (``BUFFER FULL``: frames are lost, monitoring restarts).
- Text over serial is slow: about 30-60 ms per request at 38400 baud. Asking several PIDs per request (the
  poller does, see ``obd_pids_per_request``) is what makes it fast.
- Adapters hide the padding of CAN frames (``7E8 04 41 0C 1F 40``); frames are padded back to the 8 bytes
  ISO 15765-4 requires, with 00, so the DBC decodes them. Monitor mode shows frames as they are on the bus.

Start-up: serial baud detection (38400, 9600, 115200, 230400, 500000; ``baudrate=`` skips it), ``ATZ``, echo,
linefeeds and spaces off, headers on, protocol (``protocol=``: ``"0"`` automatic, ``"6"`` ISO 15765-4 CAN
11-bit 500 kbit/s, ...; ``bitrate=500000`` or ``250000`` picks 6 or 8), adaptive timing (``adaptive_timing=``).
Clone quirks are tolerated: echo despite ``ATE0``, spaces despite ``ATS0``, ``OK`` to unsupported commands,
prompt variants. When the adapter disappears (unplugged, Bluetooth dropped) a reader thread reconnects with
back-off; sends fail with ``CanOperationError`` meanwhile. Timestamps are ``time.time()`` (or ``clock.now()``)
when a line arrives.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable

import can
import serial

from firmware_bridge.obd import isotp, pids

log = logging.getLogger(__name__)

BAUD_RATES = (38400, 9600, 115200, 230400, 500000)
#: CAN bit rate -> ELM327 protocol number (ISO 15765-4, 11-bit identifiers).
PROTOCOL_BY_BITRATE = {500000: "6", 250000: "8"}
PROMPT = ">"
FRAME_BYTES = 8
_READ_TIMEOUT_S = 0.02  # longest the reader thread blocks, so shutdown and reconnects are prompt
_PROBE_TIMEOUT_S = 0.5  # an ELM327 answers ATI within milliseconds at the right baud rate
_RESET_TIMEOUT_S = 5.0  # ATZ takes about a second on real adapters
_SETTING_TIMEOUT_S = 2.0
_RECONNECT_START_S = 0.5
_MONITOR_EMPTY_RUNS_MAX = 3  # ATMA ending at once, again and again: the adapter does not monitor

#: Adapter replies that report trouble on the CAN bus; they become python-can error frames.
BUS_ERROR_REPLIES = ("CAN ERROR", "BUS ERROR", "BUS BUSY", "FB ERROR", "DATA ERROR", "<DATA ERROR", "RX ERROR",
                     "<RX ERROR")
_ERROR_CODE = re.compile(r"ERR\d+")
#: Replies worth a warning (once), with what they usually mean.
_WARN_REPLIES = {"UNABLE TO CONNECT": "no ECU answers (ignition off, or not an ISO 15765-4 CAN car?)",
                 "BUFFER FULL": "the adapter could not keep up and lost frames"}
_QUIET_REPLIES = ("NO DATA", "?")  # a PID nobody answers; a command the adapter does not know
_INFO_PREFIXES = ("OK", "SEARCHING", "BUS INIT", "STOPPED", "ELM327")
_HEX = re.compile(r"[0-9A-F]+")
_LINE_BREAKS = re.compile(r"([\r\n>])")


class AdapterError(Exception):
    """The device does not behave like an ELM327 (no prompt, a required setting refused)."""


def _printable(reply: bytes) -> bool:
    """ASCII text, as an ELM327 answers at the right baud rate (a wrong one garbles it)."""
    return all(32 <= b < 127 or b in (10, 13) for b in reply)


def _normalised(command: str) -> str:
    return command.replace(" ", "").upper()


def parse_frame(line: str, pad: bool) -> can.Message | None:
    """A response line with headers on (``7E8 04 41 0C 1F 40``, ``7E804410C1F40``, ``18DAF110 04 41 ...``).

    Without spaces the length tells the identifier apart: 3 hex digits + whole bytes is odd (11-bit), 8 + whole
    bytes is even (29-bit). Anything else (a status reply, a headerless line) is None.
    """
    text = _normalised(line)
    if not _HEX.fullmatch(text):
        return None
    id_digits = 3 if len(text) % 2 else 8
    data = text[id_digits:]
    if not data or len(data) > 2 * FRAME_BYTES:
        return None
    arbitration_id = int(text[:id_digits], 16)
    if arbitration_id > 0x1FFFFFFF:
        return None
    payload = bytes.fromhex(data)
    if pad:
        payload += bytes(FRAME_BYTES - len(payload))
    return can.Message(arbitration_id=arbitration_id, is_extended_id=id_digits == 8, data=payload)


def request_payload(msg: can.Message) -> bytes | None:
    """What the adapter must be told to send: the single frame's bytes after its length; None for flow control."""
    data = bytes(msg.data)
    if data and data[0] >> 4 == isotp.FLOW_CONTROL:
        return None
    if msg.is_remote_frame or not data or data[0] >> 4 != isotp.SINGLE_FRAME or not 0 < data[0] < len(data):
        raise can.CanOperationError("ELM327 sends single-frame ISO-TP requests only "
                                    f"(got {data.hex(' ')} on 0x{msg.arbitration_id:X})")
    return data[1:1 + data[0]]


def header_commands(arbitration_id: int, is_extended: bool) -> list[str]:
    """``ATSH7E0`` for 11-bit; ``ATCP18`` + ``ATSHDB33F1`` for 29-bit (priority byte, then 24 bits)."""
    if is_extended:
        return [f"ATCP{arbitration_id >> 24:02X}", f"ATSH{arbitration_id & 0xFFFFFF:06X}"]
    return [f"ATSH{arbitration_id:03X}"]


class LineSplitter:
    """Serial bytes to text lines and prompts; a line may arrive over several reads."""

    def __init__(self) -> None:
        self._partial = ""

    def feed(self, chunk: bytes) -> list[str]:
        """Complete lines (stripped, none empty) and PROMPT for each ``>``."""
        parts = _LINE_BREAKS.split(self._partial + chunk.decode("ascii", "replace").replace("\x00", ""))
        self._partial = parts.pop()
        out = []
        for text, separator in zip(parts[::2], parts[1::2]):
            text = text.strip()
            if text:
                out.append(text)
            if separator == PROMPT:
                out.append(PROMPT)
        return out


def _open_serial(url: str, baudrate: int):
    return serial.serial_for_url(url, baudrate=baudrate, timeout=_READ_TIMEOUT_S, write_timeout=1.0)


def _read_available(port) -> bytes:
    """What the port has, waiting up to its timeout for the first byte."""
    waiting = port.in_waiting
    data = port.read(waiting or 1)
    if data and not waiting and port.in_waiting:
        data += port.read(port.in_waiting)
    return data


class _Session:
    """Synchronous command/answer with a just-opened adapter, before the reader thread owns the port."""

    def __init__(self, port) -> None:
        self.port = port

    def command(self, command: str, timeout_s: float) -> list[str]:
        """The reply lines (echo left out) up to the prompt; AdapterError if no prompt comes."""
        self.port.write(f"{command}\r".encode("ascii"))
        lines = []
        splitter = LineSplitter()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in splitter.feed(_read_available(self.port)):
                if line == PROMPT:
                    return lines
                if _normalised(line) != _normalised(command):
                    lines.append(line)
        raise AdapterError(f"no answer to {command} within {timeout_s:g} s")

    def setting(self, command: str, required: bool) -> None:
        if "?" in self.command(command, _SETTING_TIMEOUT_S):
            if required:
                raise AdapterError(f"the adapter rejects {command}")
            log.debug("ELM327 ignores %s", command)

    def detect_baud(self, candidates: tuple[int, ...]) -> int:
        """The first baud rate at which ``ATI`` gets printable text and a prompt back."""
        for baud in candidates:
            self.port.baudrate = baud
            self.port.reset_input_buffer()
            self.port.write(b"ATI\r")
            reply = b""
            deadline = time.monotonic() + _PROBE_TIMEOUT_S
            while time.monotonic() < deadline and PROMPT.encode() not in reply and _printable(reply):
                reply += _read_available(self.port)
            if PROMPT.encode() in reply and _printable(reply):
                return baud
        raise AdapterError(f"no ELM327 prompt at {', '.join(map(str, candidates))} baud")


class Elm327Bus(can.BusABC):
    """An ELM327 adapter as a python-can bus (see the module docstring for what it can and cannot do)."""

    #: The OBD poller asks this many PIDs per request here: every round trip costs tens of milliseconds.
    obd_pids_per_request = pids.MAX_PIDS_PER_REQUEST

    def __init__(self, channel: str, can_filters=None, *, baudrate: int | None = None, protocol: str | None = None,
                 bitrate: int | None = None, adaptive_timing: int | None = 1, monitor: bool = False, clock=None,
                 port_factory: Callable[[str, int], object] | None = None, command_timeout_s: float = 10.0,
                 reconnect_max_s: float = 10.0, **kwargs) -> None:
        if not channel:
            raise can.CanInitializationError("ELM327: a serial port is needed (channel), e.g. /dev/ttyUSB0")
        self.channel_info = f"ELM327 on {channel}"
        self._channel = str(channel)
        url, _, at_baud = str(channel).partition("@")
        baud = baudrate or (int(at_baud) if at_baud.isdigit() else None)
        self._url = url
        self._bauds = (baud,) if baud else BAUD_RATES
        self._protocol = str(protocol) if protocol is not None else PROTOCOL_BY_BITRATE.get(bitrate, "0")
        self._adaptive_timing = adaptive_timing
        self.monitor = monitor
        self._now = clock.now if clock is not None else time.time
        self._open_port = port_factory or _open_serial
        self._command_timeout_s = command_timeout_s
        self._reconnect_max_s = reconnect_max_s
        #: Every non-frame reply by text ("NO DATA", "CAN ERROR", ...): the adapter's health.
        self.replies: Counter[str] = Counter()
        self.reconnects = 0
        self.version: str | None = None
        self._frames: queue.SimpleQueue[can.Message] = queue.SimpleQueue()
        self._idle = threading.Event()  # the adapter showed its prompt: a command may be written
        self._send_lock = threading.Lock()
        self._closing = threading.Event()
        self._broken: Exception | None = None  # set by a writer; the reader thread closes and reconnects
        self._echo = ""
        self._last_reply = ""
        self._header: tuple[int, bool] | None = None
        self._warned: set[str] = set()
        self._monitor_frames = 0
        self._monitor_empty_runs = 0
        self._backoff_s = _RECONNECT_START_S
        self._port = None
        try:
            self._connect()
        except (serial.SerialException, OSError, ValueError, AdapterError) as exc:
            raise can.CanInitializationError(f"ELM327 on {channel}: {exc}") from None
        self._reader = threading.Thread(target=self._read_loop, name=f"elm327 {channel}", daemon=True)
        self._reader.start()
        super().__init__(channel=channel, can_filters=can_filters, **kwargs)

    @property
    def connected(self) -> bool:
        """False while the adapter is gone and the reader thread tries to reconnect."""
        return self._port is not None

    # -- python-can ---------------------------------------------------------------------------------------
    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        """Write one request (header first if it changed); its answers come through ``recv()``."""
        if self.monitor:
            raise can.CanOperationError("ELM327 in monitor mode (ATMA) cannot transmit")
        payload = request_payload(msg)
        if payload is None:
            return  # flow control: the adapter sends its own
        wait_s = self._command_timeout_s if timeout is None else timeout
        with self._send_lock:
            self._wait_idle(wait_s)
            header = (msg.arbitration_id, msg.is_extended_id)
            if header != self._header:
                for command in header_commands(*header):
                    self._write(command)
                    self._wait_idle(wait_s)
                    if self._last_reply == "?":
                        raise can.CanOperationError(f"ELM327 rejects {command}")
                self._header = header
            self._write(payload.hex().upper())

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        try:
            return self._frames.get(timeout=timeout), False
        except queue.Empty:
            return None, False

    def shutdown(self) -> None:
        self._closing.set()
        port = self._port
        if self.monitor and port is not None:
            try:
                port.write(b"\r")  # any character ends ATMA
            except (serial.SerialException, OSError):
                pass
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=self._command_timeout_s)
        self._close_port()
        super().shutdown()

    # -- writing (any thread) ----------------------------------------------------------------------------
    def _wait_idle(self, timeout_s: float) -> None:
        if not self._idle.wait(timeout_s):
            self._broken = AdapterError(f"no prompt within {timeout_s:g} s")
            raise can.CanOperationError(f"{self.channel_info}: adapter busy for {timeout_s:g} s; resetting it")
        if self._port is None:
            raise can.CanOperationError(f"{self.channel_info}: adapter not connected (reconnecting)")

    def _write(self, command: str) -> None:
        port = self._port
        if port is None:
            raise can.CanOperationError(f"{self.channel_info}: adapter not connected (reconnecting)")
        self._echo, self._last_reply = _normalised(command), ""
        self._idle.clear()
        try:
            port.write(f"{command}\r".encode("ascii"))
        except (serial.SerialException, OSError) as exc:
            self._broken = exc
            self._idle.set()
            raise can.CanOperationError(f"{self.channel_info}: write failed: {exc}") from None

    # -- connecting ----------------------------------------------------------------------------------------
    def _connect(self) -> None:
        """Open, find the baud rate, reset and configure; the port is ours only once it is ready."""
        port = self._open_port(self._url, self._bauds[0])
        try:
            port.timeout = _READ_TIMEOUT_S
            session = _Session(port)
            baud = session.detect_baud(self._bauds)
            self._bauds = (baud, *(b for b in self._bauds if b != baud))  # the next reconnect tries it first
            banner = session.command("ATZ", _RESET_TIMEOUT_S)
            self.version = next((line for line in banner if "ELM" in line.upper()), self.version)
            for command in ("ATE0", "ATL0", "ATS0"):
                session.setting(command, required=False)
            session.setting("ATH1", required=True)
            session.setting(f"ATSP{self._protocol}", required=True)
            if self._adaptive_timing is not None:
                session.setting(f"ATAT{self._adaptive_timing}", required=False)
            if self.monitor:
                session.setting("ATCAF0", required=False)  # frames as they are on the bus, padding included
        except BaseException:
            port.close()
            raise
        self._header = None
        self._broken = None
        self._port = port
        log.info("%s: %s at %d baud, protocol %s", self.channel_info, self.version or "adapter", baud,
                 self._protocol)
        if self.monitor:
            self._start_monitor()
        else:
            self._idle.set()

    def _reconnect(self) -> None:
        if self._closing.wait(self._backoff_s):
            return
        try:
            self._connect()
        except (serial.SerialException, OSError, ValueError, AdapterError) as exc:
            log.debug("%s: reconnect failed: %s", self.channel_info, exc)
            self._backoff_s = min(self._backoff_s * 2, self._reconnect_max_s)
            return
        self.reconnects += 1
        self._backoff_s = _RECONNECT_START_S
        log.warning("%s: adapter back", self.channel_info)

    def _lost(self, why: Exception) -> None:
        log.warning("%s: adapter lost (%s); reconnecting", self.channel_info, why)
        self._close_port()
        self._idle.set()  # a sender waiting for the prompt finds no port and fails at once

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    # -- reading (the reader thread) -----------------------------------------------------------------------
    def _read_loop(self) -> None:
        splitter = LineSplitter()
        while not self._closing.is_set():
            if self._broken is not None and self._port is not None:
                self._lost(self._broken)
            port = self._port
            if port is None:
                self._reconnect()
                splitter = LineSplitter()
                continue
            try:
                chunk = _read_available(port)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:  # pyserial on a port
                if not self._closing.is_set():  # closed under it raises the last two
                    self._lost(exc)
                continue
            if chunk:
                now = self._now()
                for line in splitter.feed(chunk):
                    self._on_line(line, now)

    def _on_line(self, line: str, t: float) -> None:
        if line == PROMPT:
            self._on_prompt()
            return
        line = line.upper()
        if _normalised(line) == self._echo:
            return  # echo despite ATE0
        frame = parse_frame(line, pad=not self.monitor)
        if frame is not None:
            frame.timestamp = t
            frame.channel = self._channel
            self._monitor_frames += 1
            self._frames.put(frame)
            return
        self._on_reply(line, t)

    def _on_reply(self, text: str, t: float) -> None:
        """A status line: counted; bus errors become error frames; trouble is logged once per kind."""
        self._last_reply = text
        if text.startswith(_INFO_PREFIXES) or text in _QUIET_REPLIES:
            self.replies[text] += 1
            log.debug("%s: %s", self.channel_info, text)
        elif text in BUS_ERROR_REPLIES or _ERROR_CODE.fullmatch(text):
            self.replies[text] += 1
            self._frames.put(can.Message(timestamp=t, is_error_frame=True, channel=self._channel))
            self._warn_once(text, "CAN bus trouble (wrong protocol or bit rate, or a wiring fault)")
        elif text in _WARN_REPLIES:
            self.replies[text] += 1
            self._warn_once(text, _WARN_REPLIES[text])
        else:
            self.replies["unrecognised"] += 1
            self._warn_once("unrecognised", f"reply {text!r} ignored (is the adapter showing headers?)")

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s: %s: %s", self.channel_info, kind, message)

    def _on_prompt(self) -> None:
        if not self.monitor:
            self._idle.set()
            return
        if self._closing.is_set():
            return
        self._monitor_empty_runs = 0 if self._monitor_frames else self._monitor_empty_runs + 1
        if self._last_reply == "?" or self._monitor_empty_runs >= _MONITOR_EMPTY_RUNS_MAX:
            log.error("%s: the adapter does not monitor the bus (ATMA: %s); monitoring stopped",
                      self.channel_info, self._last_reply or "no frames")
            return
        self._start_monitor()

    def _start_monitor(self) -> None:
        """(Re)start ATMA: after BUFFER FULL or any other end of monitoring."""
        self._monitor_frames = 0
        try:
            self._write("ATMA")
        except can.CanOperationError as exc:
            log.debug("%s: %s", self.channel_info, exc)
