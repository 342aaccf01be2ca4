"""The whole mail path on loopback for tests: slapd, twostepd, Dovecot and Postfix."""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pam_twostep.lab.dovecot import Dovecot, passdb_block
from pam_twostep.lab.dovecot_config import installed_version
from pam_twostep.lab.files import install_clients as _install
from pam_twostep.lab.postfix import Postfix
from pam_twostep.lab.processes import free_port
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


def running_twostepd(prefix: str, config: Callable[[Path], dict[str, Any]]) -> Iterator[Twostepd]:
    """For a module's fixture: a twostepd in a fresh directory (``prefix``), on the
    configuration ``config`` makes for that directory, stopped by its own pid after."""
    base = world_readable_directory(prefix)
    instance = Twostepd(base / "daemon", config(base))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def install_clients(prefix: Path) -> Path:
    """Clients as `make install-clients PREFIX=prefix` lays them out; returns the prefix."""
    _install(prefix / "lib/twostep/client", prefix / "share/twostep")
    return prefix


class MailStack:
    def __init__(
        self,
        base: Path,
        config: dict[str, Any],
        passdb: str,
        *,
        sessions: bool = False,
        auth_cache: bool = False,
        by_address: bool = False,
    ) -> None:
        """``sessions``: Dovecot's doveadm HTTP API on, and twostepd told to end sessions
        through it (``mail_sessions``, ``by_address`` as given); ``auth_cache``: Dovecot's
        auth cache on."""
        self.base = base
        self.prefix = install_clients(base / "prefix")
        dovecot_dir = base / "dovecot"
        api_key = secrets.token_urlsafe(24) if sessions else ""
        block = passdb_block(
            passdb, self.prefix / "lib/twostep/client", self.prefix / "share/twostep"
        )
        self.dovecot = Dovecot(
            dovecot_dir,
            block,
            {},
            doveadm_port=free_port() if sessions else 0,
            doveadm_api_key=api_key,
            auth_cache=auth_cache,
        )
        if sessions:
            key_file = base / "doveadm.key"
            key_file.write_text(api_key + "\n")
            key_file.chmod(0o600)
            config = {
                **config,
                "mail_sessions": {
                    "api_key_file": str(key_file),
                    "by_address": by_address,
                    "hosts": [
                        {
                            "name": "lab",
                            "url": self.dovecot.doveadm_url,
                            # 2.4.1's HTTP API cannot flush the cache (doveadm.py)
                            **(
                                {"auth_master": str(self.dovecot.auth_master)} if DOVECOT_24 else {}
                            ),
                        }
                    ],
                },
            }
        self.daemon = Twostepd(base / "twostepd", config)
        self.dovecot.environment["TWOSTEP_SOCKET"] = str(self.daemon.socket)
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


def running_stack(
    config: dict[str, Any],
    passdb: str,
    *,
    sessions: bool = False,
    auth_cache: bool = False,
    by_address: bool = False,
) -> Iterator[MailStack]:
    stack = MailStack(
        world_readable_directory("twostep-mail-"),
        config,
        passdb,
        sessions=sessions,
        auth_cache=auth_cache,
        by_address=by_address,
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.destroy()
