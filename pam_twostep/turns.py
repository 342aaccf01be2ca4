"""Logins of one account take turns in this process, and know when their read went stale.

Lock-out counts failures read from the directory. Guesses decided at once all read the
count before any of them writes its failure, so parallel guessing could pass the limit
by the number of guesses in flight (a worker pool's worth). Taking turns per entry bounds
that to about one guess per serving process. The entry's DN is known only after the
read, so a login reads, takes its turn, and reads again if it had to wait (another
process may have written meanwhile) or if this process wrote the entry since its read
began: uncontended logins still cost one search.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .core.errors import DirectoryUnavailable

__all__ = ["Turns"]

_TRACKED = 10_000
"""Entries whose last write is remembered; past this all are forgotten at once."""


class Turns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[str, tuple[threading.Lock, int]] = {}
        self._written: dict[str, int] = {}
        self._sequence = 0
        self._forgotten = 0

    def mark(self) -> int:
        """Taken before a read: ``stale`` compares writes against it."""
        with self._lock:
            return self._sequence

    def wrote(self, dn: str) -> None:
        with self._lock:
            self._sequence += 1
            if len(self._written) >= _TRACKED:
                self._written.clear()
                self._forgotten = self._sequence
            self._written[dn] = self._sequence

    def stale(self, dn: str, mark: int) -> bool:
        """Whether this process wrote ``dn`` (or may have) since ``mark`` was taken."""
        with self._lock:
            return self._written.get(dn, self._forgotten) > mark

    @contextmanager
    def turn(self, dn: str, timeout: float) -> Iterator[bool]:
        """Hold the entry's turn, telling whether it had to wait for it.

        Waiting longer than ``timeout`` is a temporary failure.
        """
        with self._lock:
            lock, waiting = self._turns.get(dn, (threading.Lock(), 0))
            self._turns[dn] = (lock, waiting + 1)
        try:
            waited = not lock.acquire(blocking=False)
            if waited and not lock.acquire(timeout=timeout):
                raise DirectoryUnavailable("another login of this account is taking too long")
            try:
                yield waited
            finally:
                lock.release()
        finally:
            with self._lock:
                lock, waiting = self._turns[dn]
                if waiting == 1:
                    del self._turns[dn]
                else:
                    self._turns[dn] = (lock, waiting - 1)
