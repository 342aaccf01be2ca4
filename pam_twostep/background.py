"""Work that must not hold up a reply: one worker thread, a bounded queue.

twostepd hands the engine's bookkeeping here (stale-client records: whether a secret
matched an old credential must not show in how long a login takes). Past
``MAX_PENDING`` waiting, work is dropped and counted; it is bookkeeping, never an
outcome. The thread starts at the first job, so a runner made before the serving
processes fork costs nothing there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["MAX_PENDING", "Background"]

log = logging.getLogger(__name__)

MAX_PENDING = 1000


class Background:
    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending = 0
        self._lock = threading.Lock()
        self.dropped = 0

    def __call__(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._pending >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending += 1
        self._pool.submit(self._run, job)

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            log.exception("background job failed")
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
