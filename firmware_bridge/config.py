"""The agent's configuration: one TOML file, every key optional with a default (DESIGN §5).

Command-line options override the file. An unknown key or a value of the wrong type is an error that names
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from firmware_bridge.analytics.settings import AnalyticsSettings
from firmware_bridge.errors import InputError

_NUMBER = (int, float)

#: section -> key -> (accepted types, default). The README's configuration reference mirrors this table.
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "bus": {
        "interface": ((str,), "socketcan"),
        "channel": ((str, int), "can0"),
        "bitrate": ((int,), None),
    },
    "obd": {
        "enabled": ((bool,), False),
        "max_requests_per_s": (_NUMBER, 10.0),
        "fast_interval_s": (_NUMBER, 0.5),
        "slow_interval_s": (_NUMBER, 5.0),
        "response_timeout_s": (_NUMBER, 0.1),
        "request_id": ((int,), 0x7DF),
        "max_pids_per_request": ((int,), None),
    },
    "vehicle": {
        "profile": ((str,), None),
        "id": ((str,), "kei"),
        "dbc": ((list,), []),
        "signal_map": ((str,), None),
    },
    "analytics": {f.name: (_NUMBER, f.default) for f in fields(AnalyticsSettings)},
    "output": {
        "line_protocol": ((str,), None),
        "console": ((bool,), True),
        "interval_s": (_NUMBER, 1.0),
        "trip_update_s": (_NUMBER, 60.0),
        "raw_signals": ((bool,), False),
        "agent_interval_s": (_NUMBER, 10.0),
    },
    "influx": {
        "url": ((str,), None),
        "api": ((str,), "v2"),
        "org": ((str,), ""),
        "bucket": ((str,), "firmware_bridge"),
        "token_file": ((str,), None),
        "timeout_s": (_NUMBER, 10.0),
    },
    "calibration": {
        "enabled": ((bool,), True),
        "ledger": ((str,), None),
        "min_intervals": ((int,), 2),
    },
    "spool": {
        "path": ((str,), None),
        "max_mb": (_NUMBER, 256.0),
        "max_age_days": (_NUMBER, 30.0),
        "queue_points": ((int,), 100_000),
        "flush_s": (_NUMBER, 0.02),
        "batch_points": ((int,), 5000),
        "drain_s": (_NUMBER, 5.0),
    },
}

#: Environment variables that override the file's [influx] keys (the token has no file key: it comes from
#: INFLUX_TOKEN, `token_file` or --influx-token, and is never printed).
INFLUX_ENV = {"INFLUX_URL": "url", "INFLUX_API": "api", "INFLUX_ORG": "org", "INFLUX_BUCKET": "bucket",
              "INFLUX_TOKEN": "token"}


def defaults() -> dict[str, dict[str, Any]]:
    return {section: {key: spec[1] for key, spec in keys.items()} for section, keys in SCHEMA.items()}


def load_config(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Defaults, overlaid with the file's values after checking every key and type."""
    config = defaults()
    if path is None:
        return config
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from None
    for section, values in data.items():
        if section not in SCHEMA:
            raise InputError(f"{path}: unknown section [{section}]; known: {', '.join(SCHEMA)}")
        if not isinstance(values, dict):
            raise InputError(f"{path}: {section} must be a table")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise InputError(f"{path}: unknown key {section}.{key}; known: {', '.join(SCHEMA[section])}")
            types = SCHEMA[section][key][0]
            if isinstance(value, bool) and bool not in types or not isinstance(value, types):
                names = " or ".join(t.__name__ for t in types)
                raise InputError(f"{path}: {section}.{key}: expected {names}, got {value!r}")
            config[section][key] = value
    return config


def apply_influx_environment(config: dict[str, dict[str, Any]], environ: dict[str, str]) -> None:
    """INFLUX_* variables override the file; then the token file is read if no token was given."""
    influx = config["influx"]
    influx.setdefault("token", "")
    for variable, key in INFLUX_ENV.items():
        if environ.get(variable):
            influx[key] = environ[variable]
    if not influx["token"] and influx["token_file"]:
        path = Path(influx["token_file"])
        try:
            influx["token"] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"influx.token_file: cannot read {path}: {exc.strerror}") from None
    if influx["api"] not in ("v1", "v2"):
        raise InputError(f"influx.api: expected v1 or v2, got {influx['api']!r}")


def analytics_settings(config: dict[str, dict[str, Any]]) -> AnalyticsSettings:
    return AnalyticsSettings(**{k: (float(v) if v is not None else None) for k, v in config["analytics"].items()})
