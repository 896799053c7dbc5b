"""What is on this bus: the IDs a log carries, which databases fit them, and which signals look like speed, rpm...

For a newcomer whose car has no known DBC, or a DBC whose names mean nothing to the agent. Everything is
streamed (per-ID and per-signal running figures), so a long log costs time, not memory.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import pickle
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cantools
import numpy as np

from firmware_bridge.decode.dbc import (BUNDLED_DBCS, OPENDBC_PREFIX, bundled_dbc_path, load_database,
                                        opendbc_names, parse, source)
from firmware_bridge.errors import InputError
from firmware_bridge.vehicles import available_vehicles, load_vehicle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Looks:
    """What a canonical quantity's signal looks like: words in its name, its unit, its physical range."""

    words: tuple[str, ...]
    units: tuple[str, ...]
    low: float
    high: float
    avoid: tuple[str, ...] = ()
    rising: bool = False  # never goes down (an odometer)


#: The quantities `inspect` looks for. Names are matched as upper-case words or parts (XMISSION_SPEED has SPEED).
QUANTITY_LOOKS: dict[str, Looks] = {
    "speed_kmh": Looks(("SPEED", "SPD", "VEL", "VSS"), ("km/h", "kph", "kmh", "km/hr"), 0, 320,
                       avoid=("WHEEL", "WHL", "ENGINE", "ENG", "FAN", "RPM", "MOTOR", "LIMIT", "CRUISE", "SET",
                              "TARGET", "ROUGH", "STEER", "YAW", "WIPER")),
    "engine_rpm": Looks(("RPM", "ENGINE_SPEED", "ENG_SPEED", "ENGSPEED", "NE"), ("rpm", "1/min", "min-1"), 0, 12000,
                        avoid=("MOTOR", "FAN", "TURBO", "WHEEL", "TARGET", "LIMIT", "IDLE")),
    "odometer_km": Looks(("ODO", "ODOMETER", "MILEAGE", "TOTAL_DIST"), ("km",), 0, 3e6, rising=True),
    "fuel_level_pct": Looks(("FUEL_LEVEL", "FUEL_LVL", "FUELLEVEL", "FUEL_GAUGE", "FUEL_TANK", "FUEL_PCT"), ("%",),
                            0, 100),
    "coolant_c": Looks(("COOLANT", "ENGINE_TEMP", "ENG_TEMP", "ECT", "WATER_TEMP", "WATERTEMP"),
                       ("°C", "degC", "C", "deg C", "degree C", "celsius"), -40, 150),
    "throttle_pct": Looks(("THROTTLE", "PEDAL_GAS", "ACCEL_PEDAL", "GAS_PEDAL", "TPS", "APP"), ("%",), 0, 100,
                          avoid=("PRESSED", "SWITCH", "TARGET")),
    "iat_c": Looks(("INTAKE_AIR", "IAT", "INTAKE_TEMP", "AIR_INTAKE"), ("°C", "degC", "C", "deg C"), -40, 120),
    "ambient_c": Looks(("AMBIENT", "OUTSIDE", "OUTDOOR", "EXT_TEMP"), ("°C", "degC", "C", "deg C"), -50, 70),
    "battery_v": Looks(("BATT_V", "BATTERY_V", "VOLTAGE", "VOLT"), ("V", "volt", "volts"), 6, 1000),
}

#: Signals that are never a quantity: message counters, checksums and the like.
_NEVER = re.compile(r"COUNTER|CHECKSUM|CRC|ALIVE|PARITY|CHKSUM|ROLLING|_CNT$|^CNT", re.IGNORECASE)
#: A candidate must reach this score to go into the printed signal map.
MAP_THRESHOLD = 0.6
#: Candidates listed per quantity.
CANDIDATES_KEPT = 5


@dataclass
class SignalFigures:
    """Running figures of one decoded signal."""

    unit: str
    count: int = 0
    low: float = math.inf
    high: float = -math.inf
    changes: int = 0
    decreases: int = 0
    last: float | None = None

    def add(self, value: float) -> None:
        self.count += 1
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        if self.last is not None and value != self.last:
            self.changes += 1
            self.decreases += value < self.last
        self.last = value


@dataclass
class IdFigures:
    """Running figures of one arbitration ID."""

    count: int = 0
    first_t: float = math.inf
    last_t: float = -math.inf
    lengths: dict[int, int] = field(default_factory=dict)

    @property
    def dlc(self) -> int:
        return max(self.lengths, key=self.lengths.get)

    def rate_hz(self) -> float | None:
        span = self.last_t - self.first_t
        return (self.count - 1) / span if self.count > 1 and span > 0 else None


def _words(name: str) -> set[str]:
    return {w for w in re.split(r"[^A-Z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).upper()) if w}


def _name_score(name: str, looks: Looks) -> float:
    upper, words = name.upper(), _words(name)
    hit = any(w in words or ("_" in w and w in upper) or (len(w) > 3 and w in upper) for w in looks.words)
    if not hit:
        return 0.0
    return 0.25 if any(w in words or (len(w) > 3 and w in upper) for w in looks.avoid) else 0.5


def score_signal(quantity: str, message: str, signal: str, figures: SignalFigures) -> float:
    """0..1: how much a decoded signal looks like a canonical quantity (name, unit, range, behaviour)."""
    looks = QUANTITY_LOOKS[quantity]
    if _NEVER.search(signal) or figures.count == 0:
        return 0.0
    score = _name_score(signal, looks) or 0.6 * _name_score(message, looks)
    unit = figures.unit.strip().lower()
    unit_fits = unit in {u.lower() for u in looks.units}
    if not score and not unit_fits:
        return 0.0  # neither its name nor its unit says so: range alone picks look-alikes
    score += 0.3 if unit_fits else 0.0
    in_range = looks.low <= figures.low and figures.high <= looks.high
    score += 0.1 if in_range else 0.0
    score += 0.1 if figures.changes and (not looks.rising or figures.decreases == 0) else 0.0
    if unit and not unit_fits:
        score *= 0.5  # a unit that says otherwise (metres for an odometer in km, mph for km/h)
    if not in_range or not figures.changes:
        score *= 0.5  # out of the quantity's range, or never changed in the log
    return round(min(score, 1.0), 3)


@dataclass
class Survey:
    """Everything `inspect` prints, gathered from the frames of one or more logs."""

    ids: dict[tuple[int, bool], IdFigures] = field(default_factory=dict)
    signals: dict[tuple[str, str], SignalFigures] = field(default_factory=dict)
    message_names: dict[int, str] = field(default_factory=dict)  # frame ID -> the message it decoded as

    def add_block(self, block) -> None:
        """Per-ID counts of one block of frames (numpy: the IDs of a block in one pass)."""
        keep = ~block.error & ~block.remote
        keys = (block.frame_id[keep].astype(np.uint64) << np.uint64(1)) | block.extended[keep].astype(np.uint64)
        times, lengths = block.t[keep], block.length[keep]
        unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        for index, key in enumerate(unique.tolist()):
            rows = inverse == index
            figures = self.ids.setdefault((key >> 1, bool(key & 1)), IdFigures())
            figures.count += int(counts[index])
            figures.first_t = min(figures.first_t, float(times[rows].min()))
            figures.last_t = max(figures.last_t, float(times[rows].max()))
            for length, n in zip(*np.unique(lengths[rows], return_counts=True)):
                figures.lengths[int(length)] = figures.lengths.get(int(length), 0) + int(n)

    def add_frame(self, frame, db: cantools.database.Database) -> None:
        self.message_names.setdefault(frame.frame_id, frame.message)
        for name, value in frame.signals.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                key = (frame.message, name)
                figures = self.signals.get(key)
                if figures is None:
                    unit = db.get_message_by_name(frame.message).get_signal_by_name(name).unit or ""
                    figures = self.signals[key] = SignalFigures(unit)
                figures.add(float(value))

    def candidates(self) -> dict[str, list[dict]]:
        ranked = {}
        for quantity in QUANTITY_LOOKS:
            scored = []
            for (message, signal), figures in self.signals.items():
                score = score_signal(quantity, message, signal, figures)
                if score > 0:
                    scored.append((score, figures.count, f"{message}.{signal}", figures))
            scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
            ranked[quantity] = [{"source": source, "score": score, "min": figures.low, "max": figures.high}
                                for score, _, source, figures in scored[:CANDIDATES_KEPT]]
        return ranked

    def fit(self, name: str, db: cantools.database.Database) -> dict:
        """How well a database fits the IDs seen: an ID matches when the database has it with that length."""
        seen = {(frame_id, extended): figures.dlc for (frame_id, extended), figures in self.ids.items()}
        by_id = {(m.frame_id, m.is_extended_frame): m.length for m in db.messages}
        matched = sum(1 for key, dlc in seen.items() if by_id.get(key) == dlc)
        coverage = matched / len(seen) if seen else 0.0
        precision = matched / len(by_id) if by_id else 0.0
        score = 2 * coverage * precision / (coverage + precision) if matched else 0.0
        return {"name": name, "ids_matched": matched, "ids_seen": len(seen), "coverage": round(coverage, 4),
                "score": round(score, 4)}


def signal_map_toml(candidates: dict[str, list[dict]]) -> str:
    """A signal map of the best candidate per quantity, ready for ``--signal-map``."""
    lines = ["# Signal map written by `firmware-bridge inspect`: the best-looking signal per quantity.",
             "# Check each against the car (drive, compare with the dashboard) before trusting it."]
    for quantity, ranked in candidates.items():
        if ranked and ranked[0]["score"] >= MAP_THRESHOLD:
            lines.append(f'{quantity} = ["{ranked[0]["source"]}"]  # score {ranked[0]["score"]}')
    return "\n".join(lines) + "\n"


def candidate_databases(extra: Iterable[str] = ()) -> Iterator[tuple[str, cantools.database.Database]]:
    """(name, database) of every database `inspect` can rank: the bundled ones, each car's, and opendbc's."""
    for name in BUNDLED_DBCS:
        yield name, cantools.database.load_file(str(bundled_dbc_path(name)))
    for car in available_vehicles():
        files = load_vehicle(car).dbc
        if files:
            yield car, load_database(list(files), bundled=False)
    for name in extra:
        yield name, load_database([name], bundled=False)
    yield from opendbc_databases()


@functools.cache
def opendbc_databases() -> tuple[tuple[str, cantools.database.Database], ...]:
    """opendbc's databases, its generated ones included (when the optional package is installed), parsed once
    per process the way ``--dbc opendbc:NAME`` loads them; one that still cannot be read is left out.

    Parsing them all takes most of a minute on a Pi, so the result is kept on disk (the user's cache folder)
    under a key made of what it is parsed from and with; a cache file that is unreadable is parsed anew."""
    key = _opendbc_cache_key()
    if key is None:  # opendbc is not installed
        return ()
    path = _cache_folder() / f"opendbc-{key}.pickle"
    try:
        with open(path, "rb") as f:
            cached = pickle.load(f)
        if isinstance(cached, tuple) and all(isinstance(db, cantools.database.Database) for _, db in cached):
            return cached
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in pickle's many ways
        log.info("%s: not a readable cache (%s); parsing opendbc again", path, exc)
    loaded = _parse_opendbc()
    _write_cache(path, loaded)
    return loaded


#: Bumped when the cached form changes.
_CACHE_FORMAT = 1


def _cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "firmware-bridge"


def _opendbc_cache_key() -> str | None:
    """A digest of opendbc's version and every file of its dbc folder (name, size, mtime), the versions of
    cantools and Python, and this parser's own code: any of them changing is a new key. None without opendbc."""
    spec = importlib.util.find_spec("opendbc")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "dbc"
    digest = hashlib.sha256()
    versions = (_CACHE_FORMAT, sys.version, cantools.__version__, importlib.metadata.version("opendbc"))
    digest.update(repr(versions).encode())
    for file in sorted(folder.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts:
            stat = file.stat()
            digest.update(f"{file.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for module in (sys.modules[__name__], sys.modules[parse.__module__]):  # the tolerant pass included
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:32]


def _write_cache(path: Path, loaded) -> None:
    """Written whole (a temporary file renamed over it), older keys' files removed; a cache that cannot be
    written only costs the next run its parse."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                pickle.dump(loaded, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        for old in path.parent.glob("opendbc-*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.info("%s: cache not written (%s)", path, exc)


def _parse_opendbc() -> tuple[tuple[str, cantools.database.Database], ...]:
    try:
        names = opendbc_names()
    except InputError:
        return ()
    loaded = []
    for name in sorted(names):
        spec = OPENDBC_PREFIX + name
        try:
            loaded.append((spec, parse(source(spec))[0]))
        except InputError as exc:
            log.info("%s: not ranked (%s)", spec, exc)
    return tuple(loaded)
