"""Cars: one folder per model holding its profile, its DBC files and its signal routes.

A car folder (``vehicles/<name>/`` here, or anywhere on disk) holds ``profile.toml`` (engine, fuel, catalog
figures, the DBC files that apply), those DBC files, and optionally ``signal_map.toml`` (which of its signals
give which canonical quantity, in the same form as the global OBD-II map). Adding a car touches that folder
only. ``--vehicle`` takes a bundled car's name, a car folder, or a single ``.toml`` profile. A field a profile
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

#: Speed domain -> WLTC phase a Japanese catalog quotes for it (市街地 L, 郊外 M, 高速道路 H).
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
    #: Database files that apply to this model (paths resolved against the car's folder, or ``opendbc:NAME``).
    dbc: tuple[str, ...] = ()
    #: The car's own signal routes (``signal_map.toml`` in its folder), put before the OBD-II ones; None: none.
    signal_map: str | None = None
    #: The car's folder (None for a single-file profile).
    folder: str | None = None
    #: Where each figure comes from.
    sources: tuple[str, ...] = ()
    catalog: Catalog = field(default_factory=Catalog)

    @property
    def electric(self) -> bool:
        return self.fuel == "electric"


PROFILE_FILE, SIGNAL_MAP_FILE = "profile.toml", "signal_map.toml"


def bundled_folder(name: str) -> Path:
    """The folder of a car shipped with the package."""
    return Path(str(resources.files(__name__) / name))


def available_vehicles() -> list[str]:
    return sorted(p.name for p in resources.files(__name__).iterdir() if (p / PROFILE_FILE).is_file())


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


def _locate(name_or_path: str) -> tuple[Path, Path | None]:
    """(profile file, car folder or None) for a bundled name, a car folder or a ``.toml`` file."""
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / PROFILE_FILE).is_file():
            raise InputError(f"{path}: not a car folder (it has no {PROFILE_FILE})")
        return path / PROFILE_FILE, path
    if path.suffix == ".toml" and path.is_file():
        return path, None
    if name_or_path in available_vehicles():
        folder = bundled_folder(name_or_path)
        return folder / PROFILE_FILE, folder
    raise InputError(f"unknown vehicle {name_or_path!r}; available: {', '.join(available_vehicles())}"
                     " (or a car folder, or a path to a .toml profile)")


def _beside(base: Path, name: str) -> str:
    """A database named in a profile: ``opendbc:NAME`` as it is, a file found beside the profile, or the name."""
    if name.startswith("opendbc:"):
        return name
    return str(base / name) if (base / name).is_file() else name


def load_vehicle(name_or_path: str | None = None) -> VehicleProfile:
    """A bundled car by name, a car folder, or a TOML profile; an unknown name lists the available ones."""
    name_or_path = name_or_path or DEFAULT_VEHICLE
    profile_path, folder = _locate(name_or_path)
    bundled = folder is not None and folder == bundled_folder(folder.name)
    origin = f"{folder.name}/{PROFILE_FILE}" if bundled else str(profile_path)
    try:
        data = tomllib.loads(profile_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{profile_path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{origin}: {exc}") from None
    for internal in ("signal_map", "folder"):
        if internal in data:
            raise InputError(f"{origin}: {internal}: comes from the car's folder, not from the profile")
    values = _build(VehicleProfile, data, origin)
    values.setdefault("name", folder.name if folder is not None else profile_path.stem)
    if values.get("fuel", "gasoline") not in FUELS:
        raise InputError(f"{origin}: fuel: expected one of {', '.join(FUELS)}, got {values['fuel']!r}")
    if values.get("fuel", "gasoline") == "gasoline" and values.get("displacement_l") is None:
        raise InputError(f"{origin}: displacement_l: a gasoline profile needs the engine displacement")
    base = profile_path.parent  # the car's files are found whatever the working directory
    values["dbc"] = tuple(_beside(base, d) for d in values.get("dbc", ()))
    if folder is not None:
        values["folder"] = str(folder)
        if (folder / SIGNAL_MAP_FILE).is_file():
            values["signal_map"] = str(folder / SIGNAL_MAP_FILE)
    return VehicleProfile(**values)
