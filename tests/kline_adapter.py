"""Fake ELM327 adapters on K-line for the tests: one answering from a recorded phone-app transcript (the 2008
Suzuki Jimny among the real recordings), one answering from the simulator's ECU in ISO 9141-2 or ISO 14230-4 header
formats. Both serve the ELM327 text protocol to a pseudo-terminal, so the agent, `firmware-bridge` in a
subprocess and python-OBD open them as they would a real adapter.
"""

from __future__ import annotations

import os
import re
import threading
import tty
from collections import defaultdict
from pathlib import Path

from firmware_bridge.sources.elm327 import legacy_frame

JIMNY_NAME = "jimny2008_kwp_car_scanner_elm327.txt"


def _kwp_message(line: str) -> bool:
    return bool(re.fullmatch(r"([0-9A-F]{2})+", line)) and legacy_frame(bytes.fromhex(line), "5") is not None


def load_transcript(path: Path) -> dict[str, list[list[str]]]:
    """OBD command -> the answers recorded for it, in order (each answer: its lines). The log is the adapter's
    own text (``command\ranswer\r..\r\r>``) among the app's notes; `01011` is PID 01 with the app's
    answer-count digit."""
    text = path.read_bytes().replace(b"\x00", b"").decode("utf-8", "replace")
    answers: dict[str, list[list[str]]] = defaultdict(list)
    for segment in text.split(">"):
        lines = [line.strip() for line in segment.replace("\n", "\r").split("\r") if line.strip()]
        if len(lines) < 2 or not re.fullmatch(r"0[0-9A][0-9A-F]*", lines[0]):
            continue
        messages = [line for line in lines[1:] if line != "SEARCHING..."]
        if messages and all(map(_kwp_message, messages)):
            command = lines[0]
            answers[command[:-1] if len(command) % 2 else command].append(messages)
    return dict(answers)


class Elm327Text:
    """The ELM327 side of the text protocol: echo until ATE0, AT commands, an automatic protocol search on the
    first OBD-II request (``SEARCHING...``), ``ATDPN``; OBD-II answers come from ``answer(command)``."""

    def __init__(self, protocol: str, answer) -> None:
        self.protocol, self.answer = protocol, answer
        self.echo, self.searched = True, False
        self.commands: list[str] = []

    def reply(self, command: str) -> str:
        command = command.replace(" ", "").upper()
        self.commands.append(command)
        head = f"{command}\r" if self.echo else ""
        if command.startswith("AT"):
            if command in ("ATZ", "ATWS"):
                self.echo, self.searched = True, False
                return head + "\rELM327 v2.2\r\r>"
            if command.startswith("ATE"):
                self.echo = command == "ATE1"
                return head + "OK\r\r>"
            replies = {"ATI": "ELM327 v2.2", "ATDPN": f"A{self.protocol}", "ATRV": "12.4V"}
            return head + replies.get(command, "OK") + "\r\r>"
        lines = self.answer(command)
        search = "" if self.searched else "SEARCHING...\r"
        self.searched = True
        return head + search + ("\r".join(lines) if lines else "NO DATA") + "\r\r>"


class TranscriptEcu:
    """Answers each command with the answers recorded for it, in turn (the last one again once they run out)."""

    def __init__(self, path: Path) -> None:
        self.recorded = load_transcript(path)
        self._next: dict[str, int] = defaultdict(int)

    def __call__(self, command: str) -> list[str] | None:
        answers = self.recorded.get(command)
        if not answers:
            return None
        i = self._next[command]
        self._next[command] += 1
        return answers[min(i, len(answers) - 1)]


class PtyAdapter:
    """An adapter on a pseudo-terminal: ``path`` is what the agent opens; each command line gets its reply."""

    def __init__(self, elm: Elm327Text) -> None:
        self.elm = elm
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                pending += os.read(self.master, 1024)
            except OSError:
                return
            while b"\r" in pending:
                line, _, pending = pending.partition(b"\r")
                text = line.decode("ascii", "replace").strip()
                if text:
                    os.write(self.master, self.elm.reply(text).encode("ascii"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)
