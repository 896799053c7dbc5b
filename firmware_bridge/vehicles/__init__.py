"""Vehicle profiles: one TOML data file per model (engine, fuel, catalog figures, DBC files...).

``--vehicle NAME`` picks a bundled profile by name, or a path to the user's own TOML file. A field a profile
leaves out is unknown (None), never guessed: a profile states only what its cited sources say.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

from firmware_bridge.errors import InputError

DEFAULT_VEHICLE = "generic-kei"
FUELS = ("gasoline", "electric")

#: Speed domain (DESIGN §1) -> WLTC phase a Japanese catalog quotes for it (市街地 L, 郊外 M, 高速道路 H).
DOMAIN_TO_WLTC_PHASE = {"urban": "low", "suburban": "medium", "motorway": "high"}


@dataclass(frozen=True)
class Catalog:
    """Catalog (type-approval) figures: WLTC combined and per phase; km/L for engines, Wh/km for EVs."""

    wltc_km_per_l: float | None = None
    wltc_low_km_per_l: float | None = None
    wltc_medium_km_per_l: float | None = None
    wltc_high_km_per_l: float | None = None
    wltc_wh_per_km: float | None = None
    wltc_low_wh_per_km: float | None = None
    wltc_medium_wh_per_km: float | None = None
    wltc_high_wh_per_km: float | None = None
    wltc_range_km: float | None = None
    #: The older Japanese JC08 cycle (kept for cars never rated on WLTC; not compared with trips).
    jc08_km_per_l: float | None = None
    jc08_wh_per_km: float | None = None

    def km_per_l(self, domain: str | None = None) -> float | None:
        """Catalog km/L of the WLTC phase matching a speed domain (None: combined)."""
        return getattr(self, _phase_key("km_per_l", domain))

    def wh_per_km(self, domain: str | None = None) -> float | None:
        """Catalog Wh/km (EVs) of the WLTC phase matching a speed domain (None: combined)."""
        return getattr(self, _phase_key("wh_per_km", domain))


def _phase_key(unit: str, domain: str | None) -> str:
    return f"wltc_{unit}" if domain is None else f"wltc_{DOMAIN_TO_WLTC_PHASE[domain]}_{unit}"


@dataclass(frozen=True)
class VehicleProfile:
    name: str
    description: str = ""
    fuel: str = "gasoline"
    engine: str | None = None
    mild_hybrid: bool = False
    displacement_l: float | None = None
    bore_mm: float | None = None
    stroke_mm: float | None = None
    #: Speed-density needs it; fill-up calibration corrects it for the actual car.
    volumetric_efficiency: float = 0.85
    idle_rpm: float = 800.0
    tank_l: float | None = None
    curb_mass_kg: float | None = None
    battery_kwh: float | None = None
    battery_nominal_v: float | None = None
    #: DBC files that apply to this model: names of bundled DBCs (``dbc/``) or paths; loaded with the profile.
    dbc: tuple[str, ...] = ()
    #: Where each figure comes from.
    sources: tuple[str, ...] = ()
    catalog: Catalog = field(default_factory=Catalog)

    @property
    def electric(self) -> bool:
        return self.fuel == "electric"


def available_vehicles() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".toml"))


def _check_value(origin: str, key: str, kind: str, value):
    """The value converted to the field's type, or an InputError naming the key."""
    base = kind.removesuffix(" | None")
    if base == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base in ("str", "bool") and type(value).__name__ == base:
        return value
    if base == "tuple[str, ...]" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    expected = {"float": "a number", "str": "a string", "bool": "true or false",
                "tuple[str, ...]": "a list of strings"}.get(base, base)
    raise InputError(f"{origin}: {key}: expected {expected}, got {value!r}")


def _build(cls, data: dict, origin: str, prefix: str = ""):
    known = {f.name: f.type for f in fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in known:
            raise InputError(f"{origin}: unknown key {prefix + key!r}; known: {', '.join(known)}")
        if known[key] == "Catalog":
            if not isinstance(value, dict):
                raise InputError(f"{origin}: {key} must be a table")
            values[key] = _build(Catalog, value, origin, prefix=f"{key}.")
        else:
            values[key] = _check_value(origin, prefix + key, known[key], value)
    return values if cls is VehicleProfile else cls(**values)


def load_vehicle(name_or_path: str | None = None) -> VehicleProfile:
    """A bundled profile by name, or a TOML file by path; an unknown name lists the available ones."""
    name_or_path = name_or_path or DEFAULT_VEHICLE
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text, origin = path.read_text(encoding="utf-8"), str(path)
    elif name_or_path in available_vehicles():
        text = (resources.files(__name__) / f"{name_or_path}.toml").read_text(encoding="utf-8")
        origin = f"{name_or_path}.toml"
    else:
        raise InputError(f"unknown vehicle {name_or_path!r}; available: {', '.join(available_vehicles())}"
                         " (or a path to a .toml profile)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{origin}: {exc}") from None
    values = _build(VehicleProfile, data, origin)
    values.setdefault("name", path.stem if origin == str(path) else name_or_path)
    if values.get("fuel", "gasoline") not in FUELS:
        raise InputError(f"{origin}: fuel: expected one of {', '.join(FUELS)}, got {values['fuel']!r}")
    if values.get("fuel", "gasoline") == "gasoline" and values.get("displacement_l") is None:
        raise InputError(f"{origin}: displacement_l: a gasoline profile needs the engine displacement")
    if origin == str(path):  # a user's profile: a DBC file beside it is found whatever the working directory
        values["dbc"] = tuple(str(path.parent / d) if (path.parent / d).is_file() else d
                              for d in values.get("dbc", ()))
    return VehicleProfile(**values)
