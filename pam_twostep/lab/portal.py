"""The self-service portal as a process of its own (``twostep portal``): on a loopback
port, or, behind the lab's nginx, on a UNIX socket in its directory that only nginx's
workers (its group) and root may open."""

from __future__ import annotations

import http.client
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .processes import Process, Server, wait_for

__all__ = ["Portal"]


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the portal's UNIX socket (the lab's own readiness check)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


class Portal(Server):
    log_name = "portal.log"

    def __init__(self, directory: Path, config_path: Path, listen: int | Path) -> None:
        """``listen``: a loopback port, or the path of a UNIX socket."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = config_path
        self.listen = listen
        self.process: Process | None = None
        self.pid: int | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``, or ``unix:/path`` (what ``portal.listen`` says)."""
        if isinstance(self.listen, Path):
            return f"unix:{self.listen}"
        return f"http://127.0.0.1:{self.listen}"

    def start(self) -> None:
        self.process = Process(
            [sys.executable, "-m", "pam_twostep.cli", "portal", "--config", str(self.config_path)],
            self.directory / "portal.log",
        )
        self.pid = self.process.pid
        wait_for(self.ready, 20, "portal")

    def ready(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"the portal exited: {self.log()[-2000:]}")
        if isinstance(self.listen, Path):
            connection = _UnixConnection(self.listen, timeout=1)
            try:
                connection.request("GET", "/signin")
                return connection.getresponse().status == 200
            except OSError:
                return False
            finally:
                connection.close()
        try:
            with urllib.request.urlopen(self.url + "/signin", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False
