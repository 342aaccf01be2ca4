"""The whole mail path on loopback: slapd, twostepd, Dovecot and Postfix."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .daemon import Twostepd
from .dovecot import Dovecot
from .postfix import Postfix

REPO = Path(__file__).resolve().parents[2]
_addresses = itertools.count(1)


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
    subprocess.run(
        ["make", "-s", "-C", str(REPO), "install-clients", f"PREFIX={prefix}"],
        check=True,
        capture_output=True,
    )
    return prefix


PASSDBS = {
    "checkpassword": "driver = checkpassword\n"
    "  args = {prefix}/lib/twostep/client/twostep-checkpassword",
    "lua": "driver = lua\n  args = file={prefix}/share/twostep/twostep-passdb.lua blocking=yes",
}


class MailStack:
    def __init__(self, base: Path, config: dict[str, Any], passdb: str) -> None:
        self.base = base
        self.prefix = install_clients(base / "prefix")
        self.daemon = Twostepd(base / "twostepd", config)
        self.dovecot = Dovecot(
            base / "dovecot",
            PASSDBS[passdb].format(prefix=self.prefix),
            {"TWOSTEP_SOCKET": str(self.daemon.socket)},
        )
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
