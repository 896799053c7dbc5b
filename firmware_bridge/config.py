"""The agent's configuration: one TOML file, every key optional with a default.

Command-line options override the file. An unknown key, a value of the wrong type or a number outside its
documented range is an error that names the key, so a typo never silently falls back to a default and a zero
never turns into a busy loop or a division by zero.
"""

from __future__ import annotations

import math
import tomllib
import urllib.parse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from firmware_bridge.analytics.settings import AnalyticsSettings
from firmware_bridge.errors import InputError

_NUMBER = (int, float)

#: section -> key -> (accepted types, default). The README's configuration reference mirrors this table.
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "bus": {  # unset: python-can's own configuration (~/.canrc, CAN_INTERFACE...), else socketcan on can0
        "interface": ((str,), None),
        "channel": ((str, int), None),
        "bitrate": ((int,), None),
        "silence_warn_s": (_NUMBER, 30.0),
    },
    "obd": {
        "enabled": ((bool,), False),
        "max_requests_per_s": (_NUMBER, 10.0),
        "fast_interval_s": (_NUMBER, 0.5),
        "slow_interval_s": (_NUMBER, 5.0),
        "response_timeout_s": (_NUMBER, 0.1),
        "request_id": ((int,), 0x7DF),
        "max_pids_per_request": ((int,), None),
        "diagnostics_interval_s": (_NUMBER, 300.0),
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
    "gps": {  # a GPS receiver: "gpsd", "gpsd://HOST:PORT", or a serial port with NMEA ("/dev/ttyUSB1@4800")
        "source": ((str,), None),
    },
    "learn": {
        "enabled": ((bool,), False),
        "go_passive": ((bool,), False),
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


@dataclass(frozen=True)
class Bound:
    """A closed range, or open at the low end (``(0, 50]``): zero is often what must be refused."""

    low: float
    high: float
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        return math.isfinite(value) and (value > self.low if self.low_open else value >= self.low) \
            and value <= self.high

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


_POSITIVE_S = Bound(0, 86_400, low_open=True)

#: Every number's range, for the file's keys and for the command line's options (the README lists them).
BOUNDS: dict[str, Bound] = {
    "bus.bitrate": Bound(5_000, 8_000_000),
    "bus.silence_warn_s": Bound(1, 86_400),
    "obd.max_requests_per_s": Bound(0, 50, low_open=True),
    "obd.fast_interval_s": Bound(0.05, 3600),
    "obd.slow_interval_s": Bound(0.05, 3600),
    "obd.response_timeout_s": Bound(0.01, 10),
    "obd.request_id": Bound(0, 0x1FFFFFFF),
    "obd.max_pids_per_request": Bound(1, 6),
    "obd.diagnostics_interval_s": Bound(10, 86_400),
    "analytics.urban_max_kmh": Bound(0, 300, low_open=True),
    "analytics.suburban_max_kmh": Bound(0, 300, low_open=True),
    "analytics.harsh_accel_ms2": Bound(0, 20, low_open=True),
    "analytics.harsh_brake_ms2": Bound(0, 20, low_open=True),
    "analytics.max_gap_s": _POSITIVE_S,
    "analytics.trip_gap_s": _POSITIVE_S,
    "analytics.engine_off_s": _POSITIVE_S,
    "analytics.min_trip_s": Bound(0, 86_400),
    "analytics.fuel_price_per_l": Bound(0, 1e6),
    "output.interval_s": Bound(0.05, 3600),
    "output.trip_update_s": Bound(1, 86_400),
    "output.agent_interval_s": Bound(1, 86_400),
    "influx.timeout_s": Bound(0.1, 600),
    "calibration.min_intervals": Bound(1, 1000),
    "spool.max_mb": Bound(1, 1_048_576),
    "spool.max_age_days": Bound(0, 36_500, low_open=True),
    "spool.queue_points": Bound(100, 10_000_000),
    "spool.flush_s": Bound(0.001, 60),
    "spool.batch_points": Bound(1, 100_000),
    "spool.drain_s": Bound(0, 86_400),
    # command-line options without a file key
    "--speedup": Bound(0.1, 1000),
    "--litres": Bound(0, 1000, low_open=True),
    "--odometer": Bound(0, 10_000_000),
    "--price": Bound(0, 1e6),
}

#: Keys holding file paths: a relative one means relative to the configuration file that names it.
PATH_KEYS = {("vehicle", "dbc"), ("vehicle", "signal_map"), ("vehicle", "profile"), ("output", "line_protocol"),
             ("influx", "token_file"), ("calibration", "ledger"), ("spool", "path")}

#: Environment variables over the file's [influx] keys, lowest precedence first: influxdb-client's own names,
#: then the InfluxDB tools' names, then ours. The token has no file key: it comes from the environment,
#: ``token_file`` or --influx-token, and is never printed.
INFLUX_ENV = (("INFLUXDB_V2_URL", "url"), ("INFLUXDB_V2_ORG", "org"), ("INFLUXDB_V2_TOKEN", "token"),
              ("INFLUX_HOST", "url"), ("INFLUX_DATABASE", "bucket"),
              ("INFLUX_URL", "url"), ("INFLUX_API", "api"), ("INFLUX_ORG", "org"), ("INFLUX_BUCKET", "bucket"),
              ("INFLUX_TOKEN", "token"))


def check_number(key: str, value: float | int | None) -> None:
    """Refuse a number outside the key's documented range (NaN and infinities included), naming the key."""
    bound = BOUNDS.get(key)
    if value is None or bound is None or isinstance(value, bool):
        return
    if value not in bound:
        raise InputError(f"{key}: {value!r} is outside {bound}")


def defaults() -> dict[str, dict[str, Any]]:
    return {section: {key: spec[1] for key, spec in keys.items()} for section, keys in SCHEMA.items()}


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}): a TOML file must be UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from None


def _resolve(base: Path, section: str, key: str, value: Any) -> Any:
    """A relative path in the file means relative to the file; a profile is a path only if one exists there."""
    def one(text: str) -> str:
        if text.startswith("opendbc:"):
            return text
        path = Path(text).expanduser()
        if path.is_absolute():
            return str(path)
        candidate = base / path
        return str(candidate) if key != "profile" or candidate.exists() else text
    return [one(v) for v in value] if isinstance(value, list) else one(value)


def load_config(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Defaults, overlaid with the file's values after checking every key, type and range."""
    config = defaults()
    if path is None:
        return config
    path = Path(path)
    data = _read_toml(path)
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
            if isinstance(value, list) and not all(isinstance(v, str) for v in value):
                raise InputError(f"{path}: {section}.{key}: expected a list of file names, got {value!r}")
            try:
                check_number(f"{section}.{key}", value)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
            if (section, key) in PATH_KEYS:
                value = _resolve(path.resolve().parent, section, key, value)
            config[section][key] = value
    return config


def check_url(url: str, what: str = "influx.url") -> str:
    """An http(s) URL with a host; credentials in it are refused (they would show in every message)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InputError(f"{what}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{what}: expected http://host:port or https://host:port, got {redact_url(url)!r}")
    if parts.username or parts.password:
        raise InputError(f"{what}: put no credentials in the URL (they would show in messages); give them as "
                         f"INFLUX_TOKEN or [influx] token_file (v1: user:password)")
    return url


def redact_url(url: str) -> str:
    """The URL without any user:password part, for messages."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url.rpartition("@")[2]
    netloc, slash, path = rest.partition("/")
    return f"{head}://{netloc.rpartition('@')[2]}{slash}{path}"


def apply_influx_environment(config: dict[str, dict[str, Any]], environ: dict[str, str]) -> None:
    """INFLUX_* (and influxdb-client's INFLUXDB_V2_*) variables override the file; then the token file is read
    if no token was given."""
    influx = config["influx"]
    influx.setdefault("token", "")
    for variable, key in INFLUX_ENV:
        if environ.get(variable):
            influx[key] = environ[variable]
    if not influx["token"] and influx["token_file"]:
        path = Path(influx["token_file"])
        try:
            influx["token"] = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"influx.token_file: cannot read {path}: "
                             f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None


def check_influx(config: dict[str, dict[str, Any]]) -> None:
    """The [influx] settings after every override: a known API and a usable URL."""
    influx = config["influx"]
    if influx["api"] not in ("v1", "v2"):
        raise InputError(f"influx.api: expected v1 or v2, got {influx['api']!r}")
    if influx["url"]:
        check_url(influx["url"])


def bus_settings(config: dict[str, dict[str, Any]], interface: str | None = None, channel: str | int | None = None,
                 bitrate: int | None = None) -> dict[str, Any]:
    """python-can's Bus arguments: the command line, then the file, then python-can's own configuration
    (its config files and CAN_INTERFACE/CAN_CHANNEL/CAN_BITRATE), then socketcan on can0."""
    import can

    given = {"interface": interface or config["bus"]["interface"], "channel": channel or config["bus"]["channel"],
             "bitrate": bitrate or config["bus"]["bitrate"]}
    given = {k: v for k, v in given.items() if v is not None}
    if "interface" not in given:
        try:
            found = can.util.load_config(config=given)
        except can.exceptions.CanInterfaceNotImplementedError as exc:
            if _python_can_names_an_interface():
                raise InputError(f"python-can configuration: {exc}") from None
            found = {"interface": "socketcan", "channel": "can0", **given}
        except ValueError as exc:
            raise InputError(f"python-can configuration: {exc}") from None
        given = {k: v for k, v in found.items() if v is not None}
    check_number("bus.bitrate", given.get("bitrate"))
    return {"channel": None, "bitrate": None, **given}


def _python_can_names_an_interface() -> bool:
    import can

    sources = (can.rc, can.util.load_environment_config(), can.util.load_file_config())
    return any(source.get("interface") or source.get("bustype") for source in sources)


def analytics_settings(config: dict[str, dict[str, Any]]) -> AnalyticsSettings:
    return AnalyticsSettings(**{k: (float(v) if v is not None else None) for k, v in config["analytics"].items()})
