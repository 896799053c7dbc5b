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

Every protocol an ELM327 speaks carries OBD-II: CAN (ISO 15765-4, 11- or 29-bit), K-line (ISO 9141-2,
ISO 14230-4 KWP with 5-baud or fast init) and SAE J1850 PWM/VPW. With headers on, K-line and J1850 answers come
as ``<header 3 bytes> <data> <checksum>`` (``86 F1 7A 41 00 98 39 80 11 94``: KWP format byte, tester F1,
ECU 7A); each is checked and becomes the ISO-TP single frame a CAN car would send, from 29-bit ID
``18DAF1<ECU>`` (``18DAF17A 06 41 00 98 39 80 11``), so the decoder, stats and replay see one kind of OBD-II.
Which protocol a line is in comes from the adapter: the one given (``protocol=``), or after an automatic search
(``ATSP0``: the first request prints ``SEARCHING...``) the one ``ATDPN`` reports, logged. Lines are held until
then, and a line that does not fit the protocol's header format (a headerless ``41 0C 1A F8``, an ISO-TP byte
that cannot be) is never taken as a frame. On K-line and J1850 the adapter's own OBD-II header is used (no
``ATSH``), one PID per request (J1979 allows several on CAN only) and at most ``KLINE_MAX_REQUESTS_PER_S``
(ISO 9141-2/14230-4 timing: the ECU answers within P2 = 50 ms, the next request waits P3 >= 55 ms).

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
import math
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable

import can
import serial

from firmware_bridge.obd import ids, isotp, pids

log = logging.getLogger(__name__)

BAUD_RATES = (38400, 9600, 115200, 230400, 500000)
#: CAN bit rate -> ELM327 protocol number (ISO 15765-4, 11-bit identifiers).
PROTOCOL_BY_BITRATE = {500000: "6", 250000: "8"}
PROMPT = ">"
FRAME_BYTES = 8
#: ELM327 protocol numbers (ATSP, ATDPN) and what they are.
PROTOCOLS = {"1": "SAE J1850 PWM (41.6 kbaud)", "2": "SAE J1850 VPW (10.4 kbaud)",
             "3": "ISO 9141-2 (5-baud init, 10.4 kbaud)", "4": "ISO 14230-4 KWP (5-baud init, 10.4 kbaud)",
             "5": "ISO 14230-4 KWP (fast init, 10.4 kbaud)", "6": "ISO 15765-4 CAN (11-bit ID, 500 kbaud)",
             "7": "ISO 15765-4 CAN (29-bit ID, 500 kbaud)", "8": "ISO 15765-4 CAN (11-bit ID, 250 kbaud)",
             "9": "ISO 15765-4 CAN (29-bit ID, 250 kbaud)", "A": "SAE J1939 CAN (29-bit ID, 250 kbaud)",
             "B": "user CAN 1 (11-bit ID)", "C": "user CAN 2 (11-bit ID)"}
_CAN_11BIT, _CAN_29BIT = frozenset("68BC"), frozenset("79A")
_KLINE, _KWP, _J1850 = frozenset("345"), frozenset("45"), frozenset("12")
_LEGACY = _KLINE | _J1850
#: K-line requests per second at most: P3 >= 55 ms after each answer plus the answer itself (P2 <= 50 ms per
#: ECU, ~1 ms a byte at 10.4 kbaud) and the adapter's own time leave room for about five.
KLINE_MAX_REQUESTS_PER_S = 5.0
#: How long a K-line or J1850 answer may take to come through the adapter (several ECUs, slow init).
LEGACY_RESPONSE_TIMEOUT_S = 0.5
#: The header the adapter uses after a reset (functional, 11-bit): never set explicitly, so that K-line and
#: J1850 keep the adapter's own OBD-II header.
_DEFAULT_HEADER = (ids.FUNCTIONAL_11BIT, False)
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


def parse_frame(line: str, pad: bool, protocol: str | None = None) -> can.Message | None:
    """A response line with headers on, in the adapter's protocol (None: not known yet, CAN assumed).

    CAN: ``7E8 04 41 0C 1F 40``, ``7E804410C1F40``, ``18DAF110 04 41 ...``; without a known protocol the length
    tells the identifier apart (3 hex digits + whole bytes is odd, 8 + whole bytes even). ``pad`` (not monitor
    mode) means ISO-TP formatting is on, so the first data byte must be a plausible ISO-TP byte. K-line and
    J1850: see `legacy_frame`. Anything else (a status reply, a headerless line) is None.
    """
    text = _normalised(line)
    if not _HEX.fullmatch(text):
        return None
    if protocol in _LEGACY:
        return legacy_frame(bytes.fromhex(text), protocol) if len(text) % 2 == 0 else None
    id_digits = 3 if protocol in _CAN_11BIT else 8 if protocol in _CAN_29BIT else 3 if len(text) % 2 else 8
    data = text[id_digits:]
    if not data or len(data) % 2 or len(data) > 2 * FRAME_BYTES:
        return None
    arbitration_id = int(text[:id_digits], 16)
    if arbitration_id > (0x7FF if id_digits == 3 else 0x1FFFFFFF):
        return None
    payload = bytes.fromhex(data)
    if pad and not _iso_tp_shaped(payload):
        return None
    if pad:
        payload += bytes(FRAME_BYTES - len(payload))
    return can.Message(arbitration_id=arbitration_id, is_extended_id=id_digits == 8, data=payload)


def _iso_tp_shaped(data: bytes) -> bool:
    """Could this be an ISO-TP frame as the adapter shows it (padding hidden)?"""
    kind, low = data[0] >> 4, data[0] & 0x0F
    if kind == isotp.SINGLE_FRAME:
        return 1 <= low < len(data)
    if kind == isotp.FIRST_FRAME:
        return len(data) == FRAME_BYTES
    return kind in (isotp.CONSECUTIVE_FRAME, isotp.FLOW_CONTROL) and len(data) >= 2


def legacy_frame(raw: bytes, protocol: str) -> can.Message | None:
    """A K-line or J1850 answer (3 header bytes, data, check byte) as the single frame CAN would carry it.

    ISO 9141-2 and J1850 headers are priority/type, target, source (``48 6B 10``); ISO 14230-4 KWP's first byte
    is a format byte whose low 6 bits give the data length (0: a length byte follows the header), unless it is
    the ISO 9141-style ``48``/``68`` form. The check byte is the sum of the others (K-line) or the SAE J1850
    CRC-8. The source address (the ECU) becomes the 29-bit answer ID ``18DAF1<ECU>``.
    """
    if len(raw) < 5:
        return None
    body, check = raw[:-1], raw[-1]
    if check != (sum(body) & 0xFF if protocol in _KLINE else crc_j1850(body)):
        return None
    start = 3
    if protocol in _KWP and raw[0] & 0x80:
        length = raw[0] & 0x3F
        if length == 0:
            length, start = raw[3], 4
        if start + length != len(body):
            return None
    data = body[start:]
    if not 1 <= len(data) <= FRAME_BYTES - 1:
        return None
    payload = bytes((len(data),)) + data
    return can.Message(arbitration_id=ids.ecu_response_id(raw[2]), is_extended_id=True,
                       data=payload + bytes(FRAME_BYTES - len(payload)))


def crc_j1850(data: bytes) -> int:
    """SAE J1850's CRC-8: polynomial x^8+x^4+x^3+x^2+1 (0x1D), initial 0xFF, result inverted."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc << 1 ^ 0x1D) & 0xFF if crc & 0x80 else crc << 1 & 0xFF
    return crc ^ 0xFF


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

    @property
    def obd_pids_per_request(self) -> int:
        """PIDs the OBD poller asks per request: six on CAN, where every round trip costs tens of milliseconds;
        one on K-line and J1850 (SAE J1979 allows several on CAN only)."""
        return 1 if self.active_protocol in _LEGACY else pids.MAX_PIDS_PER_REQUEST

    @property
    def obd_max_requests_per_s(self) -> float:
        """The poller's cap on this bus: lower on K-line."""
        return KLINE_MAX_REQUESTS_PER_S if self.active_protocol in _KLINE else math.inf

    @property
    def obd_response_timeout_s(self) -> float:
        return LEGACY_RESPONSE_TIMEOUT_S if self.active_protocol in _LEGACY else 0.0

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
        #: The protocol the adapter talks (an ELM327 number, see PROTOCOLS): the one given, or once an
        #: automatic search found one, what ATDPN says; None until then (answer lines are held meanwhile).
        self.active_protocol: str | None = None
        self._held: list[tuple[str, float]] = []
        self._asking_protocol = False
        self._protocol_unknowable = False  # ATDPN not understood: lines are read as CAN, told apart by length
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
            if self.active_protocol in _LEGACY:
                header = self._header or _DEFAULT_HEADER  # K-line, J1850: the adapter's own OBD-II header
            if header != (self._header or _DEFAULT_HEADER):
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
        self.active_protocol = self._protocol.upper().lstrip("A") or None  # "0" (search): not known yet
        if self.active_protocol not in PROTOCOLS:
            self.active_protocol = None
        self._held.clear()
        self._protocol_unknowable = False
        self._port = port
        log.info("%s: %s at %d baud, protocol %s", self.channel_info, self.version or "adapter", baud,
                 PROTOCOLS.get(self.active_protocol, "automatic search"))
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
        if self._asking_protocol:
            self._on_protocol(line)
            return
        if (self.active_protocol is None and not self.monitor and not self._protocol_unknowable
                and _HEX.fullmatch(_normalised(line))):
            self._held.append((line, t))  # which protocol it is in: ATDPN, after the prompt
            return
        if not self._put_frame(line, t, self.active_protocol):
            self._on_reply(line, t)

    def _put_frame(self, line: str, t: float, protocol: str | None) -> bool:
        frame = parse_frame(line, pad=not self.monitor, protocol=protocol)
        if frame is None:
            return False
        frame.timestamp = t
        frame.channel = self._channel
        self._monitor_frames += 1
        self._frames.put(frame)
        return True

    def _on_protocol(self, line: str) -> None:
        """The answer to ATDPN after an automatic search: the protocol found, then the held lines as frames."""
        found = _normalised(line).lstrip("A")
        self._asking_protocol = False
        if found in PROTOCOLS:
            self.active_protocol = found
            log.warning("%s: automatic protocol search found %s", self.channel_info, PROTOCOLS[found])
        else:
            self._protocol_unknowable = True
            self._on_reply(line, 0.0)
            log.warning("%s: the adapter does not say which protocol it found (ATDPN: %r); reading CAN",
                        self.channel_info, line)
        held, self._held = self._held, []
        for text, t in held:
            if not self._put_frame(text, t, self.active_protocol):
                self._on_reply(text.upper(), t)

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
            if self._held and not self._asking_protocol and self._port is not None:
                self._asking_protocol = True
                try:
                    self._write("ATDPN")  # the search found a protocol: which one (the prompt after sets idle)
                    return
                except can.CanOperationError:
                    self._asking_protocol = False
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
