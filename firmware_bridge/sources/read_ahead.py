"""Reading the next log block on another core while the pipeline works on this one.

A block is parsed by numpy (which lets go of the GIL while it works on arrays), so a reader thread a couple of
blocks ahead overlaps most of the reading with the analytics. Blocks come out in the order they were read;
an error in the reader is raised where the consumer would have met it, after the blocks before it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failed(exc))
        else:
            put(_END)

    reader = threading.Thread(target=produce, name="log-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()  # the consumer stopped early (or is done): let the reader go
        reader.join()
