"""GPS as a source: NMEA 0183 (log files, a serial receiver) and gpsd's JSON protocol, as decoded frames.

A fix becomes a :class:`DecodedFrame` of message ``GPS`` (signals ``lat``, ``lon``, ``alt_m``, ``speed_kmh``,
``heading_deg``, ``fix``, ``hdop``, ``satellites``), so it goes through the same signal map and vehicle state as
a CAN frame: GPS speed is the lowest-ranked source of ``speed_kmh`` and speaks only while the car's own speed
has been silent (a GPS-only car, or a CAN bus gone quiet). A fix without a position (no fix, 2D/3D flag off,
HDOP worse than :data:`MAX_HDOP`) or one that would mean a jump no car makes (:data:`MAX_PLAUSIBLE_KMH`) is
counted and never used; so is a corrupt sentence (bad checksum or field), reported with file and line.
"""

from __future__ import annotations

import gzip
import heapq
import json
import math
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from firmware_bridge import constants as k
from firmware_bridge.errors import InputError
from firmware_bridge.records import DecodedFrame

GPS_MESSAGE = "GPS"
#: Frame id of GPS fixes in decoded output (no CAN frame has it: ids are 11 or 29 bits).
GPS_FRAME_ID = -1
NMEA_SUFFIXES = (".nmea",)
#: A fix whose horizontal dilution of precision is worse than this is too vague to drive on (HDOP > 20 is
#: "poor": positions off by tens to hundreds of metres).
MAX_HDOP = 20.0
#: No kei vehicle moves faster than this between two fixes: a position implying more is a glitch.
MAX_PLAUSIBLE_KMH = 250.0
GPSD_PORT = 2947


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on the mean-radius sphere (within 0.5 % of the ellipsoid)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * k.EARTH_MEAN_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass
class GpsCounts:
    """What the GPS gave: fixes used, and what was left out and why."""

    fixes: int = 0
    no_fix: int = 0  # no position, or too vague (HDOP)
    implausible: int = 0  # a jump no car makes
    corrupt: int = 0  # sentences or messages that did not parse

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FixFilter:
    """Turns raw fixes into GPS frames, counting the ones that cannot be used."""

    def __init__(self, counts: GpsCounts | None = None) -> None:
        self.counts = counts or GpsCounts()
        self._last: tuple[float, float, float] | None = None  # t, lat, lon of the last fix used

    def frame(self, t: float, lat: float | None, lon: float | None, fix: int, hdop: float | None = None,
              speed_kmh: float | None = None, heading_deg: float | None = None, alt_m: float | None = None,
              satellites: int | None = None) -> DecodedFrame | None:
        """The fix as a ``GPS`` frame, or None (counted) when it has no usable position."""
        if (fix < 2 or lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180)
                or (hdop is not None and hdop > MAX_HDOP)):
            self.counts.no_fix += 1
            return None
        if self._last is not None:
            t0, lat0, lon0 = self._last
            dt = t - t0
            if dt > 0 and great_circle_km(lat0, lon0, lat, lon) / dt * k.S_PER_H > MAX_PLAUSIBLE_KMH:
                self.counts.implausible += 1
                return None
        self._last = (t, lat, lon)
        self.counts.fixes += 1
        signals = {"lat": lat, "lon": lon, "fix": float(fix), "alt_m": alt_m, "speed_kmh": speed_kmh,
                   "heading_deg": heading_deg, "hdop": hdop,
                   "satellites": float(satellites) if satellites is not None else None}
        return DecodedFrame(t, GPS_FRAME_ID, GPS_MESSAGE, {s: float(v) for s, v in signals.items() if v is not None})


# -- NMEA 0183 ---------------------------------------------------------------------------------------------------
def _number(text) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


class NmeaFixes:
    """NMEA sentences in, one GPS frame per fix epoch out: a receiver sends RMC (date, speed, course), GGA
    (quality, satellites, HDOP, altitude) and GSA (2D/3D) for the same second; a new time-of-day closes the
    epoch. Needs pynmea2 (the ``gps`` extra)."""

    def __init__(self, fixes: FixFilter, on_corrupt: Callable[[str], None]) -> None:
        try:
            import pynmea2
        except ImportError:
            raise InputError("NMEA GPS input needs pynmea2: pip install 'firmware-bridge[gps]'") from None
        self._nmea = pynmea2
        self.fixes, self.on_corrupt = fixes, on_corrupt
        self._date = None
        self._epoch: dict = {}

    def feed(self, line: str) -> DecodedFrame | None:
        """One line; returns the fix of the epoch it closed, if any."""
        text = line.strip()
        if not text:
            return None
        try:
            msg = self._nmea.parse(text, check=True)
            kind = msg.sentence_type
            stamp = getattr(msg, "timestamp", None)
        except (self._nmea.ParseError, ValueError, AttributeError, TypeError) as exc:
            self.on_corrupt(f"not an NMEA sentence ({type(exc).__name__}): {text[:60]!r}")
            return None
        if kind not in ("RMC", "GGA", "GSA", "VTG"):
            return None
        done = None
        if stamp is not None and kind in ("RMC", "GGA") and self._epoch.get("time") not in (None, stamp):
            done = self.finish()
        try:
            self._read(kind, msg, stamp)
        except (ValueError, TypeError, AttributeError) as exc:
            self.on_corrupt(f"bad {kind} field ({exc}): {text[:60]!r}")
        return done

    def _read(self, kind: str, msg, stamp) -> None:
        e = self._epoch
        if stamp is not None:
            e["time"] = stamp
        if kind == "RMC":
            if msg.datestamp:
                self._date = msg.datestamp
            e["valid"] = msg.status == "A"
            e["lat"], e["lon"] = (msg.latitude, msg.longitude) if msg.lat else (None, None)
            knots = _number(msg.spd_over_grnd)
            e["speed_kmh"] = knots * k.KMH_PER_KNOT if knots is not None else e.get("speed_kmh")
            e["heading_deg"] = _number(msg.true_course)
        elif kind == "GGA":
            e["quality"] = int(msg.gps_qual or 0)
            if msg.lat:
                e["lat"], e["lon"] = msg.latitude, msg.longitude
            e["satellites"] = int(msg.num_sats) if msg.num_sats else None
            e["hdop"] = _number(msg.horizontal_dil)
            e["alt_m"] = _number(msg.altitude)
        elif kind == "GSA":
            e["mode"] = int(msg.mode_fix_type or 1)
        elif kind == "VTG" and e.get("speed_kmh") is None:
            e["speed_kmh"] = _number(msg.spd_over_grnd_kmph)

    def finish(self) -> DecodedFrame | None:
        """Close the epoch being read (also at the end of input)."""
        e, self._epoch = self._epoch, {}
        if "time" not in e:
            return None
        if self._date is None:  # GGA alone before any RMC: no date, no time to put the fix at
            self.fixes.counts.no_fix += 1
            return None
        t = datetime.combine(self._date, e["time"]).replace(tzinfo=e["time"].tzinfo or timezone.utc).timestamp()
        fix = e.get("mode", 3 if e.get("alt_m") is not None else 2)
        if not e.get("valid", True) or e.get("quality", 1) == 0:
            fix = 1
        return self.fixes.frame(t, e.get("lat"), e.get("lon"), fix, e.get("hdop"), e.get("speed_kmh"),
                                e.get("heading_deg"), e.get("alt_m"), e.get("satellites"))


def is_nmea(path: str | Path) -> bool:
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in NMEA_SUFFIXES


def split_gps_logs(paths: Iterable[str | Path]) -> tuple[list, list]:
    """(CAN logs, NMEA logs) of the logs given, each in the order given."""
    paths = list(paths)
    return [p for p in paths if not is_nmea(p)], [p for p in paths if is_nmea(p)]


def _nmea_file(path: Path, problems, counts: GpsCounts) -> Iterator[DecodedFrame]:
    fixes = FixFilter(counts)
    number = 0

    def corrupt(what: str) -> None:
        counts.corrupt += 1
        problems.add(f"{path}:{number}", what)

    reader = NmeaFixes(fixes, corrupt)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="ascii", errors="replace") as f:
        for number, line in enumerate(f, 1):
            frame = reader.feed(line)
            if frame is not None:
                yield frame
    frame = reader.finish()
    if frame is not None:
        yield frame


def read_nmea(paths: Iterable[str | Path], problems, counts: GpsCounts) -> Iterator[DecodedFrame]:
    """The fixes of several NMEA logs, merged in time order (each file is in its own time order)."""
    yield from heapq.merge(*(_nmea_file(Path(p), problems, counts) for p in paths), key=lambda f: f.t)


def with_gps(blocks: Iterable, fixes: Iterable[DecodedFrame]) -> Iterator:
    """CAN frame blocks with GPS frames put between them in time order: a block is cut before each fix."""
    import numpy as np

    fixes = iter(fixes)
    fix = next(fixes, None)
    for block in blocks:
        while fix is not None and len(block):
            cut = int(np.searchsorted(block.t, fix.t, side="right"))
            if cut == len(block):
                break
            if cut:
                yield block.select(np.arange(cut))
                block = block.select(np.arange(cut, len(block)))
            yield fix
            fix = next(fixes, None)
        if len(block):
            yield block
    while fix is not None:
        yield fix
        fix = next(fixes, None)


# -- live receivers ------------------------------------------------------------------------------------------------
class GpsReceiver:
    """A live GPS on its own thread: each usable fix goes to ``on_frame`` stamped with the agent's clock (the
    CAN frames' time base), the receiver's own time kept for nothing else. ``source``: ``gpsd`` or
    ``gpsd://HOST:PORT`` (gpsd's JSON protocol), or a serial port with NMEA (``/dev/ttyUSB1``, ``@4800`` for
    the baud rate; ``pyserial`` URLs work too)."""

    def __init__(self, source: str, clock, counts: GpsCounts | None = None) -> None:
        self.source, self.clock = source, clock
        self.on_frame: Callable[[DecodedFrame], None] = lambda frame: None
        self.counts = counts or GpsCounts()
        self.fixes = FixFilter(self.counts)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gps", daemon=True)
        self._sock: socket.socket | None = None

    def start(self, on_frame: Callable[[DecodedFrame], None]) -> None:
        self.on_frame = on_frame
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    def _emit(self, frame: DecodedFrame | None) -> None:
        if frame is not None:
            self.on_frame(frame._replace(t=self.clock.now()))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.source == "gpsd" or self.source.startswith("gpsd://"):
                    self._gpsd()
                else:
                    self._serial()
            except OSError:
                pass  # receiver unplugged or gpsd restarting: try again shortly
            self._stop.wait(1.0)

    def _gpsd(self) -> None:
        host, _, port = self.source.removeprefix("gpsd").removeprefix("://").partition(":")
        with socket.create_connection((host or "127.0.0.1", int(port or GPSD_PORT)), timeout=5) as sock:
            self._sock = sock
            sock.settimeout(None)
            sock.sendall(b'?WATCH={"enable":true,"json":true}\n')
            sky: dict = {}
            for line in sock.makefile("r", encoding="utf-8", errors="replace"):
                if self._stop.is_set():
                    return
                try:
                    report = json.loads(line)
                except ValueError:
                    self.counts.corrupt += 1
                    continue
                if report.get("class") == "SKY":
                    sky = report
                elif report.get("class") == "TPV":
                    self._emit(self._tpv(report, sky))

    def _tpv(self, tpv: dict, sky: dict) -> DecodedFrame | None:
        """gpsd's time-position-velocity report (mode 2/3 = 2D/3D), with HDOP and satellites from its SKY."""
        used = sky.get("uSat")
        if used is None and "satellites" in sky:
            used = sum(1 for s in sky["satellites"] if s.get("used"))
        speed = tpv.get("speed")
        return self.fixes.frame(self.clock.now(), tpv.get("lat"), tpv.get("lon"), int(tpv.get("mode", 0)), sky.get("hdop"),
                                speed * k.KMH_PER_MS if speed is not None else None, tpv.get("track"),
                                tpv.get("altMSL", tpv.get("alt")), used)

    def _corrupt(self, what: str) -> None:
        self.counts.corrupt += 1

    def _serial(self) -> None:
        import serial

        port, _, baud = self.source.partition("@")
        with serial.serial_for_url(port, baudrate=int(baud or 4800), timeout=1.0) as link:
            reader = NmeaFixes(self.fixes, self._corrupt)
            while not self._stop.is_set():
                line = link.readline().decode("ascii", errors="replace")
                if line:
                    self._emit(reader.feed(line))
