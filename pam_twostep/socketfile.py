"""Giving a listening UNIX socket to its group: twostepd's and the portal's.

Both sockets are created 0600 (under a umask) and only then given their group and mode,
so neither is ever open to more than it is meant to be, not even for a moment. A group
that does not exist is a configuration error; one the process may not give the socket
to is an error that says how to fix the unit.
"""

from __future__ import annotations

import errno
import grp
import os
from pathlib import Path

from .core.errors import ConfigError

__all__ = ["group_id", "hand_over"]


def group_id(setting: str, name: str, hint: str) -> int:
    """The gid of group ``name`` configured as ``setting``, or ConfigError with ``hint``."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"{setting}: no group named {name!r} ({hint})") from None


def hand_over(path: Path, gid: int, group: str, mode: int, who: str) -> None:
    """Give the socket at ``path`` to ``gid`` and then ``mode``; ``who`` names the
    process's user in the message when it is not in that group."""
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        raise PermissionError(
            errno.EPERM,
            f"cannot give it to group {group}: {who} must be in that group "
            "(SupplementaryGroups= in the unit)",
        ) from None
    os.chmod(path, mode)
