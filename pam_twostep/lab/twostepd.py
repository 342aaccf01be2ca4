"""twostepd as a process of its own: its configuration file, socket and log."""

from __future__ import annotations

import grp
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from .. import wire
from .processes import Process, Server, wait_for

__all__ = ["Twostepd"]


def _lab_socket_group() -> str:
    """The lab's clients run as root or as the dovecot user (Dovecot's auth workers, the
    checkpassword program as Dovecot starts it) with no supplementary groups, so the
    socket goes to dovecot's own group: with the default 0660 they get in, nobody else.
    Without a dovecot group (no Dovecot here), the lab's own group."""
    try:
        return grp.getgrnam("dovecot").gr_name
    except KeyError:
        return grp.getgrgid(os.getgid()).gr_name


class Twostepd(Server):
    log_name = "twostepd.log"
    stop_timeout = 40.0

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        self.socket = directory / "twostepd.sock"
        daemon = config.setdefault("daemon", {})
        daemon.setdefault("socket", str(self.socket))
        daemon.setdefault("socket_group", _lab_socket_group())
        self.config = config
        self.config_path = directory / "twostep.yaml"
        self.write_config()
        self.process: Process | None = None
        self.pid: int | None = None

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self, wait: bool = True) -> None:
        if self.socket.exists():
            self.socket.unlink()
        self.process = Process(
            [sys.executable, "-m", "pam_twostep.daemon", "--config", str(self.config_path)],
            self.directory / "twostepd.log",
        )
        self.pid = self.process.pid
        if wait:
            wait_for(self.ready, 15, "twostepd")

    def ready(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"twostepd exited: {self.log()[-2000:]}")
        try:
            # any answer will do: a test may have taken root's rights away
            return "result" in self.ask({"op": "ping"}, timeout=1)
        except (OSError, wire.ProtocolError):
            return False

    def ask(self, request: dict[str, object], timeout: float = 10) -> dict[str, object]:
        return wire.ask(str(self.socket), request, timeout)

    def signal(self, number: int) -> None:
        if self.pid is not None:
            os.kill(self.pid, number)

    def reload(self) -> None:
        self.signal(signal.SIGHUP)

    def reload_and_wait(self, timeout: float = 10) -> None:
        """SIGHUP, then wait until the process says it reloaded (fresh policy cache)."""
        before = self.log().count("configuration and keys reloaded")
        self.reload()
        wait_for(
            lambda: self.log().count("configuration and keys reloaded") > before,
            timeout,
            "twostepd reload",
        )
