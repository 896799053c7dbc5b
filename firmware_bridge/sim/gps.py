"""A GPS receiver's NMEA 0183 log of a simulated drive: the cycle's speeds driven along a winding road.

One epoch a second (RMC, GGA, GSA and GSV, as a u-blox receiver sends them by default), positions moved by the
trapezoid mean speed of each second along a heading that turns slowly, so the route's length (the sum of
great-circle steps) is what the speeds integrate to. ``outage`` seconds have no fix (GGA quality 0, RMC status
V) and ``corrupt`` seconds have sentences with a bad checksum: what a receiver under a bridge or a loose
cable gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path

from firmware_bridge import constants as k
from firmware_bridge.sim.cycles import Cycle, load_cycle
from firmware_bridge.sim.runner import LOG_START_UNIX_S


#: The satellites the receiver uses (PRNs), and its satellites-in-view sentences: 4 a sentence.
SATELLITES = ("02", "05", "07", "09", "13", "15", "18", "20", "30")


@dataclass
class GpsRoute:
    """Where the drive goes; the default starts on a farm road near Hilo, Hawaii (kei trucks' US home)."""

    lat: float = 19.7070
    lon: float = -155.0885
    heading_deg: float = 30.0
    turn_deg_per_km: float = 40.0  # heading change per km: a winding road
    alt_m: float = 120.0
    outage: Iterable[int] = field(default_factory=tuple)  # seconds of the drive with no fix
    corrupt: Iterable[int] = field(default_factory=tuple)  # seconds whose sentences fail their checksum


def _checksum(body: str) -> str:
    return f"{reduce(lambda a, c: a ^ ord(c), body, 0):02X}"


def nmea_sentence(body: str, corrupt: bool = False) -> str:
    check = _checksum(body)
    if corrupt:
        check = f"{int(check, 16) ^ 0x5A:02X}"
    return f"${body}*{check}\n"


def _satellites_in_view() -> list[str]:
    """GSV sentences of :data:`SATELLITES` (elevation, azimuth and SNR made up, the same every second)."""
    sentences = []
    for first in range(0, len(SATELLITES), 4):
        sats = "".join(f",{prn},{30 + 5 * i},{40 * i % 360:03d},42"
                       for i, prn in enumerate(SATELLITES[first:first + 4], first))
        sentences.append(nmea_sentence(f"GPGSV,{(len(SATELLITES) + 3) // 4},{first // 4 + 1},{len(SATELLITES):02d}{sats}"))
    return sentences


GSV = _satellites_in_view()


def _coord(value: float, positive: str, negative: str, degree_digits: int) -> tuple[str, str]:
    degrees = int(abs(value))
    minutes = (abs(value) - degrees) * 60
    return f"{degrees:0{degree_digits}d}{minutes:08.5f}", positive if value >= 0 else negative


def _moved(lat: float, lon: float, heading_deg: float, km: float) -> tuple[float, float]:
    """The great-circle destination ``km`` away along ``heading_deg``."""
    d = km / k.EARTH_MEAN_RADIUS_KM
    p1, l1, h = math.radians(lat), math.radians(lon), math.radians(heading_deg)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(h))
    l2 = l1 + math.atan2(math.sin(h) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), math.degrees(l2)


@dataclass
class GpsTruth:
    route_km: float
    fixes: int
    positions: list[tuple[float, float]]


def write_nmea(path: str | Path, cycle: Cycle | str = "wltc-jp", route: GpsRoute | None = None,
               start_time: float = LOG_START_UNIX_S) -> GpsTruth:
    """Write the NMEA log of ``cycle`` driven along ``route``; returns the route's true length."""
    route = route or GpsRoute()
    cycle = load_cycle(cycle) if isinstance(cycle, str) else cycle
    outage, corrupt = set(route.outage), set(route.corrupt)
    lat, lon, heading = route.lat, route.lon, route.heading_deg
    lines, positions, route_km, previous = [], [], 0.0, 0.0
    for second, speed in enumerate(cycle.speeds_kmh):
        step_km = (previous + speed) / 2 / k.S_PER_H if second else 0.0
        previous = speed
        if step_km:
            heading = (heading + route.turn_deg_per_km * step_km) % 360
            lat, lon = _moved(lat, lon, heading, step_km)
            route_km += step_km
        positions.append((lat, lon))
        when = datetime.fromtimestamp(start_time + second, timezone.utc)
        hms, dmy = when.strftime("%H%M%S.00"), when.strftime("%d%m%y")
        (la, ns), (lo, ew) = _coord(lat, "N", "S", 2), _coord(lon, "E", "W", 3)
        knots = speed / k.KMH_PER_KNOT
        bad = second in corrupt
        if second in outage:
            lines += [nmea_sentence(f"GPRMC,{hms},V,,,,,,,{dmy},,,N"), nmea_sentence(f"GPGGA,{hms},,,,,0,00,99.99,,,,,,"),
                      nmea_sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99")]
            continue
        lines += [nmea_sentence(f"GPRMC,{hms},A,{la},{ns},{lo},{ew},{knots:.3f},{heading:.2f},{dmy},,,A", bad),
                  nmea_sentence(f"GPGGA,{hms},{la},{ns},{lo},{ew},1,09,0.90,{route.alt_m:.1f},M,0.0,M,,", bad),
                  nmea_sentence(f"GPGSA,A,3,{','.join(SATELLITES)},,,,1.60,0.90,1.30", bad), *GSV]
    Path(path).write_text("".join(lines), encoding="ascii")
    return GpsTruth(route_km, len(cycle.speeds_kmh) - len(outage | corrupt), positions)
