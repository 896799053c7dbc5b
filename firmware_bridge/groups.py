"""Rows grouped by a key column (a frame ID, a multiplexer value, a quantity), each group in file order.

One stable sort, then slices of its order: numpy's ``split`` costs several Python calls per group, which a
live tick of a few frames would pay for every message in it.
"""

from __future__ import annotations

import numpy as np


def group_rows(keys: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(key, positions of its rows, ascending) for each distinct key, lowest key first."""
    if not len(keys):
        return []
    order = np.argsort(keys, kind="stable")  # stable: each group's rows stay in file order
    ordered = keys[order]
    bounds = [0, *(np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist(), len(keys)]
    return [(key, order[lo:hi]) for key, lo, hi in zip(ordered[bounds[:-1]].tolist(), bounds[:-1], bounds[1:])]
