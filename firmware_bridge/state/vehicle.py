"""Decoded DBC signals to canonical vehicle quantities, one source at a time per quantity.

The signal map says which ``MESSAGE.signal`` gives ``speed_kmh``, ``engine_rpm``... in order of preference.
Frames arrive in blocks (a log's, or what a live bus gave in one tick) and are turned into columns of samples.
A lower-ranked source only speaks while every better one has been quiet for ``stale_s``, so a car that
broadcasts its speed and also answers OBD-II requests yields one speed series, not two interleaved ones.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import numpy as np

from firmware_bridge.errors import InputError
from firmware_bridge.records import DecodedFrame, SampleBlock

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
    """Latest value of each quantity, fed by decoded frames a block at a time, handing out the accepted samples
    as a :class:`SampleBlock` (a block of one frame is a block like any other)."""

    def __init__(self, signal_map: dict[str, list[str]], stale_s: float = DEFAULT_STALE_S) -> None:
        self.stale_s = stale_s
        # message -> [(signal, quantity, rank)]: the mapped signals of each message, in route order.
        self._routes: dict[str, list[tuple[str, str, int]]] = {}
        for quantity, sources in signal_map.items():
            for rank, source in enumerate(sources):
                message, signal = source.split(".", 1)
                self._routes.setdefault(message, []).append((signal, quantity, rank))
        self.quantities: tuple[str, ...] = tuple(sorted(signal_map))
        self._qid = {q: i for i, q in enumerate(self.quantities)}
        #: (quantity id, rank) -> last time that source spoke, as one array (-inf: never).
        ranks = max((len(sources) for sources in signal_map.values()), default=1)
        self._last_seen = np.full((len(self.quantities), max(ranks, 1)), -np.inf)
        self.values: dict[str, float] = {}
        self.times: dict[str, float] = {}

    def wanted_signals(self) -> dict[str, set[str]]:
        """Signals something downstream uses, by message name (for decoders that extract only those)."""
        return {message: {signal for signal, _, _ in routes} for message, routes in self._routes.items()}

    def routes(self) -> dict[str, list[tuple[str, str, int]]]:
        """message -> [(signal, quantity, rank)] in route order."""
        return self._routes

    def accept_decoded(self, decoded) -> SampleBlock:
        """A decoded block's samples: its messages' columns, and the frames decoded one by one."""
        times = decoded.block.t
        parts = [(rows * _PARTS, times[rows], name, names, columns)
                 for name, (_, fragments) in decoded.messages.items() for rows, names, columns in fragments]
        for row, frames in decoded.one_by_one.items():
            parts += self._frame_parts(frames, row * _PARTS)
        return self.accept(parts)

    def accept_frames(self, frames: list[DecodedFrame]) -> SampleBlock:
        """Frames already decoded (GPS fixes), in order."""
        return self.accept(self._frame_parts(frames, 0))

    @staticmethod
    def _frame_parts(frames: list[DecodedFrame], first_key: int) -> list:
        parts = []
        for i, frame in enumerate(frames):
            signals = {name: value for name, value in frame.signals.items() if value is not None}
            parts.append((np.array([first_key + i]), np.array([frame.t], dtype=np.float64), frame.message,
                          tuple(signals), [[value] for value in signals.values()]))
        return parts

    def accept(self, parts) -> SampleBlock:
        """Samples of decoded columns [(frame keys, times, message, signal names, value columns)]: a source is
        accepted only while every better source of its quantity has been silent for ``stale_s``."""
        pieces = []  # (frame keys, times, route position, quantity id, rank, values)
        for keys, times, message, names, columns in parts:
            for position, (signal, quantity, rank) in enumerate(self._routes.get(message, ())):
                if signal in names:
                    values = np.asarray(columns[names.index(signal)], dtype=np.float64)
                    pieces.append((keys, times, position, self._qid[quantity], rank, values))
        before = {q: (self.times[q], v) for q, v in self.values.items()}
        if not pieces:
            return _empty(self.quantities, before, self._qid)
        key = np.concatenate([p[0] * _ROUTES + p[2] for p in pieces])
        piece = np.repeat(np.arange(len(pieces)), [len(p[0]) for p in pieces])  # each sample's piece
        t, value = np.concatenate([p[1] for p in pieces]), np.concatenate([p[5] for p in pieces])
        finite = np.isfinite(value) & np.isfinite(t)  # a NaN from a float signal is no reading
        if not finite.all():
            key, piece, t, value = key[finite], piece[finite], t[finite], value[finite]
        order = np.argsort(key, kind="stable")  # frame order, then the message's route order
        key, t, value, piece = key[order], t[order], value[order], piece[order]
        qid, rank = np.array([p[3] for p in pieces])[piece], np.array([p[4] for p in pieces])[piece]
        accepted = self._accepted(t, qid, rank)
        self._remember(t, qid, rank, value, accepted)
        return SampleBlock(self.quantities, t[accepted], qid[accepted], value[accepted],
                           key[accepted] // _ROUTES, before, self._qid)

    def _accepted(self, t: np.ndarray, qid: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """Rejected while a better source of the same quantity spoke less than stale_s before (earlier in the
        block, or before it)."""
        accepted = np.ones(len(t), dtype=bool)
        lower = np.flatnonzero(rank > 0)
        if not len(lower):
            return accepted
        n = len(t)
        width = self._last_seen.shape[1]
        # Every sample keyed by (source, position): a source's last sample before position i is a search away.
        sources = qid * width + rank
        order = np.argsort(sources.astype(np.uint16) if self._last_seen.size <= 1 << 16 else sources,
                           kind="stable")  # few sources: a radix sort, positions kept in order
        sorted_keys = sources[order] * n + order
        for better in range(int(rank.max())):
            mine = lower[rank[lower] > better]
            source = qid[mine] * width + better
            j = np.searchsorted(sorted_keys, source * n + mine) - 1
            found = (j >= 0) & (sorted_keys[np.maximum(j, 0)] // n == source)
            last = np.where(found, t[order[np.maximum(j, 0)]], self._last_seen[qid[mine], better])
            accepted[mine] &= ~(t[mine] - last < self.stale_s)
        return accepted

    def _remember(self, t, qid, rank, value, accepted) -> None:
        """The last time each source spoke; each quantity's newest accepted value and its time."""
        last = np.full(self._last_seen.size, -1)
        np.maximum.at(last, qid * self._last_seen.shape[1] + rank, np.arange(len(t)))
        spoke = np.flatnonzero(last >= 0)
        self._last_seen.flat[spoke] = t[last[spoke]]
        newest = np.full(len(self.quantities), -1)
        np.maximum.at(newest, qid[accepted], np.flatnonzero(accepted))
        for q in np.flatnonzero(newest >= 0).tolist():
            i = newest[q]
            self.values[self.quantities[q]] = float(value[i])
            self.times[self.quantities[q]] = float(t[i])


#: Frame keys leave room for the frames one block row splits into (an OBD-II answer of several PIDs), and
#: sample keys for the routes of one message.
_PARTS, _ROUTES = 16, 64


def _empty(quantities: tuple[str, ...], before: dict, ids: dict[str, int]) -> SampleBlock:
    nothing = np.zeros(0)
    return SampleBlock(quantities, nothing, nothing.astype(np.int64), nothing, nothing.astype(np.int64), before, ids)
