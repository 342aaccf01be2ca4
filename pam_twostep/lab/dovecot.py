"""A private Dovecot 2.3 or 2.4 (IMAP, POP3, auth socket for Postfix) on loopback.

Started as root with its own base_dir, stopped with its whole process group (killing the
master alone leaves auth and log processes behind). The passdb is chosen per instance:
the twostep checkpassword program (2.3 only), the twostep Lua script, PAM, or native
LDAP; dovecot_config writes it in the installed version's dialect. The
client classes log in from a chosen loopback address: Dovecot's auth penalty is per
client address, so tests and the demo give each login its own.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .dovecot_config import Passdb, Settings, installed_version, render
from .processes import Process, Server, free_port, port_open, wait_for

__all__ = ["Dovecot", "SourceIMAP", "SourcePOP3", "passdb_block"]


class SourceIMAP(imaplib.IMAP4):
    """IMAP from a chosen loopback address: Dovecot's auth penalty is per client address."""

    def __init__(self, host: str, port: int, source: str, timeout: float = 30) -> None:
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self._source, 0)
        )


class SourcePOP3(poplib.POP3):
    def __init__(self, host: str, port: int, source: str, timeout: float = 30) -> None:
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self._source, 0)
        )


@dataclass
class Dovecot(Server):
    log_name = "dovecot.log"

    directory: Path
    passdb: Passdb
    environment: dict[str, str] = field(default_factory=dict)
    imap_port: int = 0
    pop3_port: int = 0
    auth_verbose: bool = True
    doveadm_port: int = 0
    doveadm_api_key: str = ""
    auth_cache: bool = False
    process: Process | None = None
    pid: int | None = None

    @property
    def auth_client(self) -> Path:
        return self.directory / "run" / "auth-client"

    @property
    def auth_master(self) -> Path:
        return self.directory / "run" / "auth-master"

    @property
    def doveadm_url(self) -> str:
        return f"http://127.0.0.1:{self.doveadm_port}/doveadm/v1"

    @property
    def config_path(self) -> Path:
        return self.directory / "dovecot.conf"

    def write_config(self) -> None:
        """Writes the configuration in the installed Dovecot's dialect (dovecot_config)."""
        for name in ("run", "state", "mail", "home"):
            (self.directory / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o755)
        os.chmod(self.directory / "mail", 0o1777)
        os.chmod(self.directory / "home", 0o1777)
        self.imap_port = self.imap_port or free_port()
        self.pop3_port = self.pop3_port or free_port()
        settings = Settings(
            self.directory,
            self.passdb,
            tuple(self.environment.items()),
            self.imap_port,
            self.pop3_port,
            self.auth_verbose,
            self.doveadm_port,
            self.doveadm_api_key,
            self.auth_cache,
        )
        text, extra = render(settings, installed_version())
        for path, content in extra.items():
            Path(path).write_text(content)
            os.chmod(path, 0o600)
        self.config_path.write_text(text)

    def start(self) -> None:
        self.write_config()
        check = subprocess.run(
            ["doveconf", "-c", str(self.config_path), "-n"],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"dovecot configuration refused: {check.stderr}")
        self.process = Process(
            ["dovecot", "-F", "-c", str(self.config_path)], self.directory / "dovecot.stdout"
        )
        self.pid = self.process.pid
        wait_for(
            lambda: (
                port_open(self.imap_port)
                and port_open(self.pop3_port)
                and self.auth_client.exists()
            ),
            15,
            "dovecot",
        )

    # -- clients ----------------------------------------------------------------------

    def imap_login(self, user: str, password: str, source: str) -> tuple[str, str]:
        """('OK', text) or ('NO', text with the response code)."""
        client = SourceIMAP("127.0.0.1", self.imap_port, source)
        try:
            client.login(user, password)
        except imaplib.IMAP4.error as exc:
            return "NO", str(exc)
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()
        return "OK", ""

    def pop3_login(self, user: str, password: str, source: str) -> tuple[str, str]:
        client = SourcePOP3("127.0.0.1", self.pop3_port, source)
        try:
            client.user(user)
            client.pass_(password)
        except poplib.error_proto as exc:
            return "ERR", exc.args[0].decode(errors="replace")
        finally:
            with contextlib.suppress(poplib.error_proto, OSError):
                client.quit()
        return "OK", ""


def passdb_block(kind: str, clients: Path, share: Path) -> Passdb:
    """The passdb for Dovecot talking to twostep by ``kind`` (lua or checkpassword)."""
    if kind == "checkpassword":
        return Passdb.checkpassword(clients / "twostep-checkpassword")
    if kind == "lua":
        return Passdb.lua(share / "twostep-passdb.lua")
    raise ValueError(f"unknown passdb {kind!r}: checkpassword or lua")
