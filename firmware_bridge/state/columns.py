"""The vehicle state's rules applied to a whole block of decoded frames at once, for replay.

Same rules as :meth:`VehicleState.update`, on columns: samples come in the order update() emits them (frame
order, then the message's route order), a source is accepted only while every better source of the quantity
has been silent for ``stale_s``, and a quantity's value as the analytics see it at a sample is the latest
accepted one up to and including that sample's frame (update() sets the whole frame's values first).
:func:`commit` leaves the state exactly as feeding those frames one by one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.state.vehicle import VehicleState

NEG_INF = float("-inf")


@dataclass
class BlockSamples:
    """Every sample of a block (accepted or not) in emission order; quantities by index into ``quantities``."""

    quantities: list[str]
    row: np.ndarray  # the frame's row in the block
    t: np.ndarray
    qid: np.ndarray
    rank: np.ndarray
    value: np.ndarray  # float64, as float() makes them
    accepted: np.ndarray
    _latest_index: dict = field(default_factory=dict, repr=False)  # per quantity, computed on first use

    def __len__(self) -> int:
        return len(self.t)

    def latest(self, quantity: str, at: np.ndarray, state: VehicleState) -> tuple[np.ndarray, bool]:
        """(value, present) of ``quantity`` as seen at the samples ``at`` (NaN where absent); presence must not
        change in between (the caller treats a quantity's first value as a break)."""
        if quantity not in self._latest_index:  # once per block: the quantity's last accepted sample so far
            mine = self.accepted & (self.qid == (self.quantities.index(quantity) if quantity in self.quantities else -1))
            self._latest_index[quantity] = np.maximum.accumulate(np.where(mine, np.arange(len(mine)), -1)) \
                if len(mine) else np.zeros(0, dtype=np.int64)
        if "frame end" not in self._latest_index:  # a sample sees its whole frame's values (update() sets them first)
            self._latest_index["frame end"] = np.searchsorted(self.row, self.row, side="right") - 1
        last = self._latest_index[quantity][self._latest_index["frame end"][at]]
        initial = state.values.get(quantity)
        return np.where(last >= 0, self.value[np.maximum(last, 0)], np.nan if initial is None else initial), \
            initial is not None


def block_samples(state: VehicleState, messages: dict, times: np.ndarray) -> BlockSamples:
    """Samples of a block's decoded messages ({name: (rows, fragments)}), with the priority rule applied."""
    routes = state.routes()
    quantities = sorted({q for message_routes in routes.values() for _, q, _ in message_routes})
    qids = {q: i for i, q in enumerate(quantities)}
    parts = []  # (rows, route position, quantity id, rank, values)
    for name, (_, fragments) in messages.items():
        for position, (signal, quantity, rank) in enumerate(routes.get(name, ())):
            for rows, names, columns in fragments:
                if signal in names:
                    values = np.asarray(columns[names.index(signal)], dtype=np.float64)
                    parts.append((rows, position, qids[quantity], rank, values))
    if not parts:
        empty = np.zeros(0)
        return BlockSamples(quantities, empty.astype(np.int64), empty, empty.astype(np.int64),
                            empty.astype(np.int64), empty, empty.astype(bool))
    row = np.concatenate([p[0] for p in parts])
    position = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
    order = np.argsort(row * 1024 + position, kind="stable")  # frame order, then the message's route order
    row = row[order]
    qid = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])[order]
    rank = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])[order]
    value = np.concatenate([p[4] for p in parts])[order]
    t = times[row]
    return BlockSamples(quantities, row, t, qid, rank, value, _accepted(state, quantities, t, qid, rank))


def _accepted(state: VehicleState, quantities: list[str], t: np.ndarray, qid: np.ndarray,
              rank: np.ndarray) -> np.ndarray:
    """VehicleState's priority: rejected while a better source spoke less than stale_s before (earlier in order)."""
    accepted = np.ones(len(t), dtype=bool)
    lower = np.flatnonzero(rank > 0)
    if not len(lower):
        return accepted
    n = len(t)
    # Every sample keyed by (source, position): the last sample of a source before position i is a search away.
    keys = (qid * 1024 + rank) * n + np.arange(n)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    for better in range(int(rank.max())):
        mine = lower[rank[lower] > better]
        source = qid[mine] * 1024 + better
        j = np.searchsorted(sorted_keys, source * n + mine) - 1
        found = (j >= 0) & (sorted_keys[np.maximum(j, 0)] // n == source)
        before = np.array([state._last_seen.get((q, better), NEG_INF)  # noqa: SLF001 - its own rule
                           for q in quantities])[qid[mine]]  # the source's last time before this block
        last = np.where(found, t[order[np.maximum(j, 0)]], before)
        accepted[mine] &= ~(t[mine] - last < state.stale_s)
    return accepted


def commit(state: VehicleState, samples: BlockSamples, lo: int, hi: int) -> None:
    """The state after samples[lo:hi]: last time each source spoke, latest accepted value of each quantity."""
    if hi <= lo:
        return
    t, qid, rank, value, accepted = (samples.t[lo:hi], samples.qid[lo:hi], samples.rank[lo:hi],
                                     samples.value[lo:hi], samples.accepted[lo:hi])
    order = np.arange(hi - lo)
    last = np.full(len(samples.quantities) * 1024, -1)
    np.maximum.at(last, qid * 1024 + rank, order)  # each source's last sample
    for key in np.flatnonzero(last >= 0).tolist():
        state._last_seen[(samples.quantities[key // 1024], key % 1024)] = float(t[last[key]])  # noqa: SLF001
    last = np.full(len(samples.quantities), -1)
    np.maximum.at(last, qid[accepted], order[accepted])  # each quantity's last accepted sample
    for q in np.flatnonzero(last >= 0).tolist():
        state.values[samples.quantities[q]] = float(value[last[q]])
        state.times[samples.quantities[q]] = float(t[last[q]])
