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
import errno
import multiprocessing
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["DevLog"]

_PATH = Path("/dev/log")


def _state(path: Path) -> str:
    """ "listening", "stale" (a socket nobody reads) or "unknown" (leave it alone)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):  # syslog-ng may listen on stream
        probe = socket.socket(socket.AF_UNIX, kind)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return "stale"
        except OSError as exc:
            if exc.errno == errno.EPROTOTYPE:
                continue  # the other kind of socket: try that
            return "unknown"
        finally:
            probe.close()
        return "listening"
    return "unknown"


def _read(sock: socket.socket, events: Any, accepted: Any, parent: int) -> None:
    os.setpgid(0, 0)  # a process group of its own: its CPU is measured apart
    sock.settimeout(1)
    while os.getppid() == parent:  # an orphan (the bench was killed) stops reading
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
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
        self._made: tuple[int, int] | None = None
        context = multiprocessing.get_context("fork")
        self._context = context
        self._events = context.Value("q", 0)
        self._accepted = context.Value("q", 0)

    def __enter__(self) -> DevLog:
        if self.path.is_symlink() or self.path.exists():
            # the host's: a daemon's socket, or a symlink to one (systemd's), is used as
            # it is; only a plain socket that nobody reads is replaced
            state = _state(self.path)
            if state == "listening":
                self.host = True
                return self
            if self.path.is_symlink() or not self.path.is_socket() or state != "stale":
                raise OSError(f"{self.path} exists and is not a socket nobody reads: left alone")
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o666)
            made = os.lstat(self.path)
            self._made = (made.st_dev, made.st_ino)
            self._process = self._context.Process(
                target=_read, args=(sock, self._events, self._accepted, os.getpid()), daemon=True
            )
            self._process.start()
        finally:
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
            now = os.lstat(self.path)
            if (now.st_dev, now.st_ino) == self._made:  # still ours, not a daemon's since
                self.path.unlink()
