"""Vehicle profiles: one TOML data file per model (displacement, fuel, volumetric efficiency...).

``--vehicle NAME`` picks a bundled profile by name, or a path to the user's own TOML file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from firmware_bridge.errors import InputError

DEFAULT_VEHICLE = "generic-kei"


@dataclass(frozen=True)
class VehicleProfile:
    name: str
    description: str = ""
    fuel: str = "gasoline"
    displacement_l: float = 0.658
    volumetric_efficiency: float = 0.85
    idle_rpm: float = 800.0
    tank_l: float = 27.0
    curb_mass_kg: float = 850.0


def available_vehicles() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".toml"))


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
    known = {f.name: f.type for f in fields(VehicleProfile)}
    for key, value in data.items():
        if key not in known:
            raise InputError(f"{origin}: unknown key {key!r}")
        if known[key] == "float" and not isinstance(value, (int, float)):
            raise InputError(f"{origin}: {key}: expected a number")
    data.setdefault("name", path.stem if origin == str(path) else name_or_path)
    return VehicleProfile(**{k: float(v) if known[k] == "float" else v for k, v in data.items()})
