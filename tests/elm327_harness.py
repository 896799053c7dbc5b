"""The third-party ELM327-emulator (https://github.com/Ircama/ELM327-emulator) as a subprocess, for the serial
adapter tests and benchmarks/bench_elm327.py.

- ``Emulator``: ``python -m elm -s <scenario> -b <file>`` (batch mode: the first line of the file is the pty it
  serves). A stable symlink points at the current pty, as udev's /dev/serial/by-id links or a bound
  /dev/rfcomm0 do, so a restarted emulator is found where the agent looks. ``slcan=True`` runs its SLCAN
  (Lawicel) mode on a pty pair bridged by a ``PtyRelay``. The process is always killed on ``stop()``.
- ``PtyRelay``: a null-modem between an adapter and a new pty the agent opens, optionally as slow as a real
  adapter: each command line is held ``latency_s`` (adapter + ECU response time) and the answer's bytes flow at
  ``baud`` (10 bits per byte). The emulator answers instantly, and its own ``delay`` setting sleeps once per PID
  of a multi-PID request (and per AT command), which no real adapter does; hence the relay.
"""

from __future__ import annotations

import heapq
import itertools
import os
import select
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

START_TIMEOUT_S = 15.0
_BITS_PER_BYTE = 10  # start bit, 8 data bits, stop bit


class Emulator:
    """One ELM327-emulator process at a time; ``start()`` again after ``stop()`` is the adapter coming back."""

    def __init__(self, workdir: Path, scenario: str = "car", slcan: bool = False) -> None:
        self.workdir = Path(workdir)
        self.scenario = scenario
        self.slcan = slcan
        self.link = self.workdir / ("slcan0" if slcan else "elm327")  # where the agent opens the adapter
        self.process: subprocess.Popen | None = None
        self._relay: PtyRelay | None = None
        self._runs = itertools.count()

    def start(self) -> Emulator:
        out = self.workdir / f"emulator-{next(self._runs)}.out"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "elm", "-s", self.scenario, "-b", str(out)]
        adapter_fd = None
        if self.slcan:
            adapter_fd, emulator_side = _raw_pty()
            command += ["-c", os.ttyname(emulator_side)]
            os.close(emulator_side)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, cwd=self.workdir)
        try:
            ready = self._wait_for_line(out, "(SLCAN) started" if self.slcan else "/dev/")
            pty_path = ready.strip()
            if self.slcan:
                self._relay = PtyRelay(adapter_fd).start()
                pty_path = self._relay.path
        except BaseException:
            self.stop()
            raise
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(pty_path)
        tmp.replace(self.link)
        return self

    def _wait_for_line(self, out: Path, marker: str) -> str:
        """The first whole line of the emulator's output with ``marker``: its pty, or its SLCAN port opened."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"elm327-emulator exited with {self.process.returncode}")
            if out.exists():
                lines = out.read_text(errors="replace").split("\n")[:-1]
                found = [line for line in lines if marker in line]
                if found:
                    return found[0]
            time.sleep(0.02)
        raise RuntimeError(f"elm327-emulator not ready within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        """Kill the process (the adapter vanishes: its pty reads fail with EIO)."""
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stdin:
                self.process.stdin.close()
            self.process = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def open_raw(path: str) -> int:
    """A serial device opened as a raw byte pipe (the relay's adapter side)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


def _raw_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave


class PtyRelay:
    """Bytes between ``adapter_fd`` and a new pty (``path``, for the agent), with an adapter's latency."""

    def __init__(self, adapter_fd: int, latency_s: float = 0.0, baud: int | None = None) -> None:
        self.adapter_fd = adapter_fd
        self.latency_s = latency_s
        self.byte_s = _BITS_PER_BYTE / baud if baud else 0.0
        self._agent_fd, self._agent_side = _raw_pty()  # keep the agent side open: no EIO between opens
        self.path = os.ttyname(self._agent_side)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-relay", daemon=True)
        self._line = b""

    def start(self) -> PtyRelay:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self._agent_fd, self._agent_side, self.adapter_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def _run(self) -> None:
        due: list[tuple[float, int, int, bytes]] = []  # (time, order, fd, bytes)
        order = itertools.count()
        answer_busy_until = 0.0
        while not self._stop.is_set():
            timeout = 0.05 if not due else max(0.0, min(0.05, due[0][0] - time.monotonic()))
            try:
                readable, _, _ = select.select([self._agent_fd, self.adapter_fd], [], [], timeout)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the emulator went away
                    return
                if fd == self._agent_fd:
                    for line in self._command_lines(data):
                        at = now + self.latency_s + len(line) * self.byte_s
                        heapq.heappush(due, (at, next(order), self.adapter_fd, line))
                else:
                    answer_busy_until = max(now, answer_busy_until) + len(data) * self.byte_s
                    heapq.heappush(due, (answer_busy_until, next(order), self._agent_fd, data))
            while due and due[0][0] <= time.monotonic():
                _, _, fd, data = heapq.heappop(due)
                try:
                    os.write(fd, data)
                except OSError:
                    return

    def _command_lines(self, data: bytes) -> list[bytes]:
        """Whole command lines (up to CR) as they complete; partial ones wait for their CR."""
        if not self.latency_s:
            return [data]
        self._line += data
        lines = []
        while b"\r" in self._line:
            line, _, self._line = self._line.partition(b"\r")
            lines.append(line + b"\r")
        return lines


class RecordingPort:
    """A pyserial port that keeps, for each command written, the bytes the adapter answered (a dialogue)."""

    def __init__(self, port) -> None:
        self._port = port
        self.dialogue: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> int:
        for line in data.split(b"\r")[:-1]:
            self.dialogue.append((line.decode("ascii", "replace"), b""))
        return self._port.write(data)

    def read(self, size: int = 1) -> bytes:
        data = self._port.read(size)
        if data and self.dialogue:
            command, reply = self.dialogue[-1]
            self.dialogue[-1] = (command, reply + data)
        return data

    def __getattr__(self, name):
        return getattr(self._port, name)

    def __setattr__(self, name, value):
        if name in ("_port", "dialogue"):
            super().__setattr__(name, value)
        else:
            setattr(self._port, name, value)


def write_dialogue(path: Path, dialogue: list[tuple[str, bytes]], header: str) -> None:
    """The text format of tests/data/elm327/: ``COMMAND<TAB>reply``, the reply a Python string literal."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{command}\t{reply.decode('ascii', 'replace')!r}" for command, reply in dialogue]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def record_emulator_dialogue(path: Path, requests: list[str]) -> None:
    """Connect Elm327Bus to the emulator's "car" scenario, send ``requests`` (hex), save what was said."""
    import tempfile

    import can
    import serial

    from firmware_bridge.sources.elm327 import Elm327Bus

    ports: list[RecordingPort] = []

    def recording(url: str, baudrate: int) -> RecordingPort:
        ports.append(RecordingPort(serial.serial_for_url(url, baudrate=baudrate, timeout=0.02)))
        return ports[-1]

    with tempfile.TemporaryDirectory() as workdir, Emulator(Path(workdir)) as emulator:
        bus = Elm327Bus(str(emulator.link), port_factory=recording)
        try:
            for request in requests:
                payload = bytes.fromhex(request)
                bus.send(can.Message(arbitration_id=0x7DF, is_extended_id=False,
                                     data=bytes((len(payload),)) + payload + bytes(7 - len(payload))))
                while bus.recv(0.3) is not None:
                    pass
        finally:
            bus.shutdown()
    from importlib.metadata import version
    write_dialogue(path, ports[-1].dialogue, f"Recorded from ELM327-emulator {version('elm327-emulator')} "
                   '(scenario "car") by tests/elm327_harness.py record_emulator_dialogue().\n'
                   "COMMAND<TAB>what the adapter answered (Python string literal); repeated commands in order.")


if __name__ == "__main__":  # regenerate the recorded dialogue
    record_emulator_dialogue(Path(__file__).parent / "data" / "elm327" / "emulator-car.txt",
                             ["0100", "010C", "010D", "010C0D", "010D0C10030444", "0105", "0902"])
