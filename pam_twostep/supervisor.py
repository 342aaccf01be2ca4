"""twostepd's supervisor: several serving processes accepting on one socket.

Python runs one thread at a time per process, so with ``daemon.processes`` above one
the daemon binds its socket once and this forks that many serving processes, which
accept on it side by side. It forwards SIGHUP and SIGTERM to them and replaces one that
dies; if they keep dying at start-up (a broken configuration, say) it gives up with the
last one's exit code (78 for bad configuration) rather than spin. Later, the wait
before a replacement grows with the deaths of the last minute, up to 5 s: processes
that cannot start are not replaced in a tight loop, while those still serving go on.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

from .core.errors import ConfigError

__all__ = ["Supervisor"]

log = logging.getLogger("twostepd")


class Supervisor:
    """Forks the serving processes, forwards signals to them, replaces one that dies."""

    def __init__(self, serve: Callable[[], int], count: int, settle: float = 10.0) -> None:
        self._serve = serve
        self._count = count
        self._settle = settle
        """Seconds after start in which deaths count towards giving up."""
        self._children: set[int] = set()
        self._stopping = False
        self._quick_deaths = 0
        self._deaths: collections.deque[float] = collections.deque()
        """When serving processes died, over the last minute."""

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the serving process
            code = 70
            try:
                for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(number, signal.SIG_DFL)
                code = self._serve()
            except ConfigError as exc:
                log.error("%s", exc)
                code = 78
            except BaseException:  # report, then leave it to the supervisor
                log.exception("serving process failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self._children.add(pid)
        if self._stopping:  # SIGTERM came while forking: this one was not told
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _forward(self, number: int) -> None:
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def _stop(self, number: int, frame: object) -> None:
        self._stopping = True
        self._forward(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, lambda number, frame: self._forward(signal.SIGHUP))
        for _ in range(self._count):
            self._spawn()
        log.info("%d serving processes started", self._count)
        started = time.monotonic()
        waited = 0.0  # the start-up window counts the processes' time, not these waits
        code = 0
        while self._children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            self._children.discard(pid)
            if self._stopping:
                continue
            exit_code = os.waitstatus_to_exitcode(status)
            log.error("serving process %d exited (%d); starting another", pid, exit_code)
            now = time.monotonic()
            early = now - started - waited < self._settle
            self._quick_deaths = self._quick_deaths + 1 if early else 0
            self._deaths.append(now)
            while self._deaths[0] < now - 60:
                self._deaths.popleft()
            if self._quick_deaths > 3 * self._count:
                log.error("serving processes keep dying; giving up")
                self._stopping = True
                self._forward(signal.SIGTERM)
                code = 78 if exit_code == 78 else 70
                continue
            wait = min(5.0, 0.1 * len(self._deaths))
            waited += wait
            deadline = now + wait
            while not self._stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, wait))  # a SIGTERM ends the wait
            if not self._stopping:
                self._spawn()
        return code
