"""Many callers released at the same moment, for races."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["at_once"]

_T = TypeVar("_T")


def at_once(count: int, call: Callable[[int], _T]) -> list[_T]:
    """``count`` calls in threads released together by a barrier; each is told its index."""
    barrier = threading.Barrier(count)
    results: list[_T | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        results[index] = call(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results  # type: ignore[return-value]
