"""Decoded DBC signals to canonical vehicle quantities, one source at a time per quantity.

The signal map says which ``MESSAGE.signal`` gives ``speed_kmh``, ``engine_rpm``... in order of preference.
A lower-ranked source only speaks while every better one has been quiet for ``stale_s``, so a car that
broadcasts its speed and also answers OBD-II requests yields one speed series, not two interleaved ones.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from firmware_bridge.errors import InputError
from firmware_bridge.records import DecodedFrame, Sample

#: Seconds after which a better source counts as gone and the next one is used.
DEFAULT_STALE_S = 2.0


def _read_map(text: str, origin: str) -> dict[str, list[str]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{origin}: {exc}") from None
    for quantity, sources in data.items():
        if not isinstance(sources, list) or not all(isinstance(s, str) and "." in s for s in sources):
            raise InputError(f'{origin}: {quantity}: expected a list of "MESSAGE.signal" strings')
    return data


def _read_map_file(path: str | Path, what: str) -> dict[str, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    return _read_map(text, str(path))


def load_signal_map(user_map: str | Path | None = None, car_map: str | Path | None = None) -> dict[str, list[str]]:
    """The OBD-II map, after the car's own routes, after a user map's: for each quantity, best source first."""
    bundled = resources.files("firmware_bridge.state") / "signal_map.toml"
    merged = _read_map(bundled.read_text(encoding="utf-8"), "signal_map.toml")
    for path, what in ((car_map, "car signal map"), (user_map, "signal map")):
        if path is None:
            continue
        for quantity, sources in _read_map_file(path, what).items():
            merged[quantity] = sources + [s for s in merged.get(quantity, []) if s not in sources]
    return merged


def check_signal_map(path: str | Path, db) -> None:
    """A map naming a message or signal that no loaded database has is an error: a typo would read as silence."""
    for quantity, sources in _read_map_file(path, "signal map").items():
        for source in sources:
            message_name, signal_name = source.split(".", 1)
            try:
                message = db.get_message_by_name(message_name)
            except KeyError:
                raise InputError(f"{path}: {quantity}: no loaded database has a message {message_name!r}"
                                 " (add its DBC with --dbc)") from None
            if signal_name not in {signal.name for signal in message.signals}:
                raise InputError(f"{path}: {quantity}: message {message_name} has no signal {signal_name!r}; "
                                 f"it has {', '.join(sorted(s.name for s in message.signals))}")


class VehicleState:
    """Latest value of each quantity, fed by decoded frames, emitting accepted :class:`Sample` objects."""

    def __init__(self, signal_map: dict[str, list[str]], stale_s: float = DEFAULT_STALE_S) -> None:
        self.stale_s = stale_s
        # message -> [(signal, quantity, rank)]: one dict lookup per frame, then only the mapped signals.
        self._routes: dict[str, list[tuple[str, str, int]]] = {}
        for quantity, sources in signal_map.items():
            for rank, source in enumerate(sources):
                message, signal = source.split(".", 1)
                self._routes.setdefault(message, []).append((signal, quantity, rank))
        self._last_seen: dict[tuple[str, int], float] = {}  # (quantity, rank) -> last time that source spoke
        self.values: dict[str, float] = {}
        self.times: dict[str, float] = {}

    def wanted_signals(self) -> dict[str, set[str]]:
        """Signals something downstream uses, by message name (for decoders that extract only those)."""
        return {message: {signal for signal, _, _ in routes} for message, routes in self._routes.items()}

    def routes(self) -> dict[str, list[tuple[str, str, int]]]:
        """message -> [(signal, quantity, rank)] in the order :meth:`update` reads them (for batch replay)."""
        return self._routes

    def update(self, frame: DecodedFrame) -> list[Sample]:
        routes = self._routes.get(frame.message)
        if not routes:
            return []
        samples = []
        t = frame.t
        for signal, quantity, rank in routes:
            value = frame.signals.get(signal)
            if value is None:
                continue
            self._last_seen[(quantity, rank)] = t
            if any(t - self._last_seen.get((quantity, better), float("-inf")) < self.stale_s
                   for better in range(rank)):
                continue
            value = float(value)
            self.values[quantity] = value
            self.times[quantity] = t
            samples.append(Sample(t, quantity, value))
        return samples
