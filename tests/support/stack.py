"""The whole mail path on loopback for tests: slapd, twostepd, Dovecot and Postfix."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pam_twostep.lab.dovecot import Dovecot, passdb_block
from pam_twostep.lab.dovecot_config import installed_version
from pam_twostep.lab.files import install_clients as _install
from pam_twostep.lab.postfix import Postfix
from pam_twostep.lab.twostepd import Twostepd

_addresses = itertools.count(1)

DOVECOT_24 = installed_version().is_24

PASSDBS = [
    pytest.param(
        "checkpassword",
        marks=pytest.mark.skipif(DOVECOT_24, reason="Dovecot 2.4 has no checkpassword passdb"),
    ),
    "lua",
]
"""The passdbs that serve twostep, for tests parametrized over both; checkpassword is
skipped (and counted as skipped) where the installed Dovecot is 2.4."""


LAB_INFO_KEYS = frozenset(
    {
        "config",
        "ldap_uri",
        "base_dn",
        "admin_dn",
        "admin_password",
        "imap_port",
        "pop3_port",
        "smtp_port",
        "portal_url",
        "daemon_socket",
        "users",
        "dir",
        "passdb",
        "audit_log",
    }
)
"""The keys README.md promises from `twostep lab up --json` and `lab status --json`."""


def source() -> str:
    """A loopback address no earlier login used: Dovecot's auth penalty is per address."""
    n = next(_addresses)
    return f"127.{100 + (n >> 16) % 100}.{(n >> 8) & 255}.{n & 255 or 1}"


def world_readable_directory(prefix: str) -> Path:
    """A scratch directory the dovecot and postfix users can traverse (pytest's is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


def install_clients(prefix: Path) -> Path:
    """Clients as `make install-clients PREFIX=prefix` lays them out; returns the prefix."""
    _install(prefix / "lib/twostep/client", prefix / "share/twostep")
    return prefix


class MailStack:
    def __init__(self, base: Path, config: dict[str, Any], passdb: str) -> None:
        self.base = base
        self.prefix = install_clients(base / "prefix")
        self.daemon = Twostepd(base / "twostepd", config)
        block = passdb_block(
            passdb, self.prefix / "lib/twostep/client", self.prefix / "share/twostep"
        )
        self.dovecot = Dovecot(base / "dovecot", block, {"TWOSTEP_SOCKET": str(self.daemon.socket)})
        self.postfix = Postfix(base / "postfix", self.dovecot.auth_client)
        self.passdb = passdb

    def start(self) -> None:
        self.daemon.start()
        self.dovecot.start()
        self.postfix.start()

    def stop(self) -> None:
        for part in (self.postfix, self.dovecot, self.daemon):
            part.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def running_stack(config: dict[str, Any], passdb: str) -> Iterator[MailStack]:
    stack = MailStack(world_readable_directory("twostep-mail-"), config, passdb)
    try:
        stack.start()
        yield stack
    finally:
        stack.destroy()
