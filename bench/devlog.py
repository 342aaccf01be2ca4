"""A syslog socket for the bench's twostepd, as a host's syslog daemon provides one.

The example configuration sends every audit event to syslog. Where nothing listens on
``/dev/log`` (a container, this CI machine), glibc's ``syslog()`` fails quietly and a
bench would time a twostepd that audits nothing. So, unless the host's own syslog
daemon is there (then it is used as it is, and counts are unknown), the bench binds
``/dev/log`` itself, in a process of its own that reads every datagram as a syslog
daemon would and counts twostep's events: an accepted login without its event is then
a measured loss, not a guess. The socket is removed afterwards, and only if it was ours.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["DevLog"]

_PATH = Path("/dev/log")


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _read(sock: socket.socket, events: Any, accepted: Any) -> None:
    os.setpgid(0, 0)  # a process group of its own: its CPU is measured apart
    while True:
        data = sock.recv(65536)
        if b"twostep: " not in data:
            continue
        with events.get_lock():
            events.value += 1
        if b'"action":"login"' in data and b'"outcome":"accept"' in data:
            with accepted.get_lock():
                accepted.value += 1


class DevLog:
    def __init__(self, path: Path = _PATH) -> None:
        self.path = path
        self.host = False
        """True when the host's own syslog daemon listens (then nothing is counted)."""
        self._process: Any = None
        context = multiprocessing.get_context("fork")
        self._context = context
        self._events = context.Value("q", 0)
        self._accepted = context.Value("q", 0)

    def __enter__(self) -> DevLog:
        if self.path.exists() or self.path.is_symlink():
            if _listening(self.path):
                self.host = True
                return self
            if not self.path.is_socket():
                raise OSError(f"{self.path} exists and is not a socket: not replacing it")
            self.path.unlink()  # a socket nobody reads
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o666)
        self._process = self._context.Process(
            target=_read, args=(sock, self._events, self._accepted), daemon=True
        )
        self._process.start()
        sock.close()
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    def counts(self) -> tuple[int, int] | None:
        """(twostep events, accepted-login events) read so far, or None on the host's."""
        if self.host:
            return None
        return int(self._events.value), int(self._accepted.value)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is None:
            return
        self._process.terminate()
        self._process.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
