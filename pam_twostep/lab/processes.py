"""Starting and stopping servers: each in its own session, stopped by its own pid.

A server started here leads a new process group, so stopping it stops everything it
forked (Dovecot's auth and log processes, Postfix's services) and nothing else. A
process started by one ``twostep lab up`` can be stopped by a later ``lab down`` from
its recorded pid alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

__all__ = ["Process", "Server", "free_port", "port_open", "stop_group", "wait_for"]


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to now, and that this process never handed out before.

    The kernel may give the same free port to two binds in a row: the lab picks the web
    port, then Postfix's, before either server binds, and once both got one port (CI13,
    Debian 13: the portal's readiness check spoke HTTP to Postfix)."""
    with _HANDED_OUT_LOCK:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise OSError("no free port that was not handed out already")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{what} not ready after {timeout:g} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (this machine's init may not reap) counts as gone.
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as handle:
        if handle.read().split(")")[-1].split()[0] == "Z":
            return False
    return True


def stop_group(pid: int, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process group led by ``pid``, wait for the leader, then kill what is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class Process:
    """A server child in its own session, its output appended to a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log
        with open(log, "ab") as output:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=cwd,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        # Anything left in the group (workers of a master that is gone) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def kill(self) -> None:
        self.stop(timeout=5, sig=signal.SIGKILL)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Server:
    """What every lab server shares: its process, or only its pid when an earlier
    ``twostep lab up`` started it; stopping it either way; and reading its log."""

    directory: Path
    process: Process | None
    pid: int | None
    log_name: ClassVar[str]
    """The log file in ``directory`` that says why it failed."""
    stop_timeout: ClassVar[float] = 10.0

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=self.stop_timeout)
        elif self.pid is not None:
            stop_group(self.pid, timeout=self.stop_timeout)
        self.process = None
        self.pid = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
        self.process = None
        self.pid = None

    def log(self) -> str:
        path = self.directory / self.log_name
        return path.read_text(errors="replace") if path.exists() else ""
