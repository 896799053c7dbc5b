"""Running sums fed in blocks: the terms of a block are added one at a time, after the sum so far."""

from __future__ import annotations

import numpy as np


def sum_in_order(start: float, terms: np.ndarray) -> float:
    """start + terms[0] + terms[1] + ..., one addition at a time (numpy's cumulative sum is sequential): a sum
    fed in blocks of any size comes out the same, bit for bit."""
    if not len(terms):
        return start
    return float(np.cumsum(np.concatenate(([start], terms)))[-1])


def sum_by_key(sums: dict, keys: np.ndarray, terms: np.ndarray, labels) -> None:
    """sums[labels[key]] += term for each (key, term), in order."""
    for key in np.flatnonzero(np.bincount(keys, minlength=len(labels))).tolist():
        label = labels[key]
        sums[label] = sum_in_order(sums.get(label, 0.0), terms[keys == key])
