"""The self-service portal as a process of its own, on a loopback port (``twostep portal``)."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from .processes import Process, Server, wait_for

__all__ = ["Portal"]


class Portal(Server):
    log_name = "portal.log"

    def __init__(self, directory: Path, config_path: Path, port: int) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = config_path
        self.port = port
        self.process: Process | None = None
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        try:
            with urllib.request.urlopen(self.url + "/signin", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False
