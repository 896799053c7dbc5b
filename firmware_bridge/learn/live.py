"""Learning while `run` polls: the same evidence from the live bus, then the car read from its own frames.

The learner listens beside the pipeline (frames gathered into blocks, as a log is read). Every `check_s` of car
time a fit runs on a copy of the evidence in a worker thread, so the bus thread never waits for it (on a
simulated clock, where nothing waits for the wall, it runs in line: `background=False`). Once speed
and rpm are found with high confidence, the car folder is written to the state directory, one line says so,
and at the next tick (under the pipeline's lock) the running pipeline takes the learnt signals ahead of OBD-II;
with `go_passive` the poller stops asking for them.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import can

from firmware_bridge.learn.evidence import Evidence
from firmware_bridge.learn.fit import Finding, Learner
from firmware_bridge.learn.folder import signal_source, write_folder
from firmware_bridge.records import block_of_messages
from firmware_bridge.state.vehicle import VehicleState

log = logging.getLogger(__name__)

#: What must be learnt, with at least this confidence, before the agent trusts the car's own frames.
REQUIRED = ("speed_kmh", "engine_rpm")
HIGH_CONFIDENCE = 0.9
#: The OBD-II PIDs of those quantities (SAE J1979: 0x0D speed, 0x0C rpm).
PIDS = {"speed_kmh": 0x0D, "engine_rpm": 0x0C}
_BLOCK_FRAMES = 2048


def adopt(pipeline, folder: Path, name: str, findings: list[Finding]) -> None:
    """The running pipeline reads the learnt signals from now on, ahead of every other source of the same
    quantities; the values it holds (and that the poller reads) stay where they are."""
    database = pipeline.decoder.db
    database.add_dbc_file(str(folder / f"{name}.dbc"))
    old = pipeline.state
    ranked: dict[str, list[tuple[int, str]]] = {}
    for message, routes in old.routes().items():
        for signal, quantity, rank in routes:
            ranked.setdefault(quantity, []).append((rank, f"{message}.{signal}"))
    signal_map = {quantity: [source for _, source in sorted(sources)] for quantity, sources in ranked.items()}
    for finding in findings:
        signal_map[finding.quantity] = [signal_source(name, finding), *signal_map.get(finding.quantity, [])]
    state = VehicleState(signal_map, old.stale_s)
    state.values, state.times = old.values, old.times
    pipeline.use_state(state, database, counts=pipeline.decoder.counts)


class LiveLearner(can.Listener):
    """Gathers the evidence from the bus; `tick()` (under the pipeline's lock) applies what was learnt."""

    def __init__(self, pipeline, folder_root: Path, name: str, go_passive: bool = False, poller=None,
                 check_s: float = 30.0, say: Callable[[str], None] = print, background: bool = True) -> None:
        self.pipeline, self.folder_root, self.name = pipeline, Path(folder_root), name
        self.go_passive, self.poller, self.check_s, self.say = go_passive, poller, check_s, say
        self.background = background
        self.evidence = Evidence()
        self.learnt: list[Finding] | None = None
        self.folder: Path | None = None
        self._pending: list[can.Message] = []
        self._next_check_t: float | None = None
        self._worker: threading.Thread | None = None
        self._ready: list[Finding] | None = None
        self._adopted = False

    def on_message_received(self, msg: can.Message) -> None:
        if self.learnt is not None:
            return
        self._pending.append(msg)
        if len(self._pending) >= _BLOCK_FRAMES:
            self.evidence.feed(block_of_messages(self._pending))
            self._pending = []
            self._maybe_check(msg.timestamp)

    def on_error(self, exc: Exception) -> None:  # a bus hiccup must not end the learning
        pass

    def _maybe_check(self, now: float) -> None:
        if self._next_check_t is None:
            self._next_check_t = now + self.check_s
        if now < self._next_check_t or (self._worker is not None and self._worker.is_alive()):
            return
        self._next_check_t = now + self.check_s
        if not self.background:
            self._check(self.evidence)
            return
        snapshot = copy.copy(self.evidence)
        snapshot.ids = copy.deepcopy(self.evidence.ids)
        snapshot.samples = copy.deepcopy(self.evidence.samples)
        self._worker = threading.Thread(target=self._check, args=(snapshot,), name="learn", daemon=True)
        self._worker.start()

    def _check(self, evidence: Evidence) -> None:
        try:
            findings, missing = Learner(evidence).learn()
            by_quantity = {f.quantity: f for f in findings if f.found}
            if not all(q in by_quantity and by_quantity[q].confidence >= HIGH_CONFIDENCE for q in REQUIRED):
                return
            found = list(by_quantity.values())
            write_folder(self.folder_root, self.name, ["the live bus"], evidence, findings, missing)
            self.folder = self.folder_root / self.name
            self._ready = found
            self.learnt = found
        except Exception:  # noqa: BLE001 - learning is a bonus: the drive goes on being recorded either way
            log.exception("learning the car's broadcast signals failed")

    def tick(self) -> None:
        """Called with the pipeline's lock held: adopt what the worker learnt, once."""
        found = self._ready
        if found is None or self._adopted:
            return
        self._adopted = True
        adopt(self.pipeline, self.folder, self.name, found)
        passive = self.go_passive and self.poller is not None
        if passive:
            self.poller.stop_polling(PIDS[q] for q in REQUIRED)
        signals = ", ".join(f"{f.quantity} in 0x{f.layout.frame_id:X} (confidence {f.confidence:.2f})" for f in found)
        self.say(f"firmware-bridge: learnt the car's own frames: {signals}; car folder {self.folder}"
                 + ("; OBD-II polling of speed and rpm stopped" if passive else ""))


def live_learner(config: dict, pipeline, poller) -> LiveLearner | None:
    """The learner `[learn] enabled` asks for: the car folder goes to <state directory>/learnt/<vehicle id>."""
    if not config["learn"]["enabled"]:
        return None
    import sys

    from firmware_bridge.sinks.outputs import default_state_dir

    return LiveLearner(pipeline, default_state_dir() / "learnt", config["vehicle"]["id"],
                       go_passive=config["learn"]["go_passive"], poller=poller,
                       say=lambda line: print(line, file=sys.stderr))
