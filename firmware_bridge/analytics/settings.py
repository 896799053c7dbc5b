"""Analytics thresholds, every one with a default a user can override in the configuration file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnalyticsSettings:
    #: Speed domains (EU RDE, Regulation 2017/1151 Annex IIIA: urban <= 60 km/h, rural 60-90, motorway > 90;
    #: "suburban" is the name Japanese catalogs give the WLTC medium phase, 郊外).
    urban_max_kmh: float = 60.0
    suburban_max_kmh: float = 90.0
    #: Harsh events on the 1 Hz acceleration (m/s²): 2.5 m/s² (~0.25 g) is far above anything in WLTC
    #: (max 1.67 m/s²) and above a kei car's brisk acceleration; braking at 3.0 m/s² (~0.3 g) is a hard stop.
    harsh_accel_ms2: float = 2.5
    harsh_brake_ms2: float = 3.0
    #: Samples further apart than this are not integrated (distance, fuel, time) but counted as a gap.
    max_gap_s: float = 5.0
    #: A trip ends after this much bus silence, or this long with the engine off (rpm 0 and standing still;
    #: idle-stop at a light is shorter), or at once when the ignition signal says off.
    trip_gap_s: float = 300.0
    engine_off_s: float = 180.0
    #: Trips shorter than this are dropped (engine started to move the car in the drive, a key-on check).
    min_trip_s: float = 60.0
    #: Fuel price per litre in the user's currency; trip cost is null without it.
    fuel_price_per_l: float | None = None


#: Speed bands (km/h, lower bound inclusive): a small fixed set, the `band` tag of the speed_band measurement.
SPEED_BANDS = ((0.0, "0-20"), (20.0, "20-40"), (40.0, "40-60"), (60.0, "60-80"), (80.0, "80-100"),
               (100.0, "100-120"), (120.0, "120+"))
SPEED_DOMAINS = ("urban", "suburban", "motorway")

#: Below this speed (km/h) the car counts as standing (OBD speed is whole km/h: 0 means stopped).
STANDING_BELOW_KMH = 1.0

#: RDE: v·a+ and RPA count 1 Hz samples whose acceleration exceeds 0.1 m/s².
RDE_POSITIVE_ACCEL_MS2 = 0.1


#: The band labels in order (``band_index`` gives positions in it).
BAND_LABELS = tuple(name for _, name in SPEED_BANDS)
_BAND_LOWERS_KMH = np.array([lower for lower, _ in SPEED_BANDS])


def band_index(speed_kmh: np.ndarray) -> np.ndarray:
    """Index into BAND_LABELS of each speed: the last band whose lower bound it reaches (the first below 0)."""
    return np.maximum(np.searchsorted(_BAND_LOWERS_KMH, speed_kmh, side="right") - 1, 0)


def domain_index(speed_kmh: np.ndarray, settings: AnalyticsSettings) -> np.ndarray:
    """Index into SPEED_DOMAINS of each speed (upper bounds inclusive)."""
    return np.where(speed_kmh <= settings.urban_max_kmh, 0, np.where(speed_kmh <= settings.suburban_max_kmh, 1, 2))
