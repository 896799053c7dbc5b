"""Log blocks read on another thread: same order, errors where they happened, and the reader stops with us."""

from __future__ import annotations

import threading
import time

import pytest

from firmware_bridge.sources.read_ahead import read_ahead


def test_items_in_order_with_the_reader_ahead():
    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    got = []
    for item in read_ahead(items(), depth=2):
        time.sleep(0.001)
        assert len(produced) <= item + 1 + 3  # the one handed over, two queued, one waiting to be put
        got.append(item)
    assert got == list(range(50))


def test_an_error_comes_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("block 3 unreadable")

    got = []
    with pytest.raises(ValueError, match="block 3 unreadable"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_stops_the_reader():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    blocks = read_ahead(endless(), depth=2)
    assert [next(blocks) for _ in range(3)] == [0, 1, 2]
    blocks.close()
    assert threading.active_count() == before
